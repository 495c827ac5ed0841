"""Cross-domain ASL fingerspelling recognition with an ImageNet-pretrained VGG16 in Flax.

One folder per role, each importing only those listed before it (tests/test_structure.py):
`core` (presets, the plan of the work, the store, units, names, statistics; pure), `datasets`
(archives to model inputs), `network` (VGG16, its convolutions and weights), `training` (the
shared loop), `extraction` (frozen features, across processes), `diagnostics` (separability,
Grad-CAM), `stages` (prepare, features, train, evaluate, score, bench, report), and `run`, the
command line.
"""

__version__ = "0.1.0"
