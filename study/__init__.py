"""Cross-domain ASL fingerspelling recognition with an ImageNet-pretrained VGG16 in Flax.

The package is organised by role (DESIGN.md section 5): `config` holds the presets,
`datasets` the TFDS builders, label canon and splits, and `run` the command line.
"""

__version__ = "0.1.0"
