"""Cross-domain ASL fingerspelling recognition with an ImageNet-pretrained VGG16 in Flax.

One folder per role, each importing only those listed before it (tests/test_structure.py):
`core` (presets, the plan of the work, the store, which alone names every file, units, names,
statistics; pure), `datasets` (archives to model inputs), `network` (VGG16, its convolutions and
weights), `hands` (MediaPipe's hand landmarks and the landmark vectors), `training` (the shared
loop, adaptation), `extraction` (frozen features, across processes), `diagnostics` (the
computations of separability, trivial cues and Grad-CAM), `stages` (every stage: prepare, hands,
features, train, evaluate, separability, cues, gradcam, score, bench, report); `runtime` (a
process's set-up), `run`, the command line, and `api`, a trained model from Python
(docs/code.md draws the whole).
"""

__version__ = "0.1.0"
