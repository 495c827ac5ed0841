"""VGG16 in Flax NNX: the backbone, its frozen form for feature extraction, block 5 and the
heads (model), the 3x3 convolution paths (conv), and the ImageNet weights (weights)."""
