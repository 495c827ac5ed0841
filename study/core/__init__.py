"""What every part of the study shares: the presets, the plan of the work, where its units
live (the store), units and their fingerprints, names, labels, splits, statistics, errors,
files and figures. Pure (no jax, no TFDS): it imports nothing from the folders above it."""
