"""Diagnostics of the cross-domain collapse, run by `evaluate`: domain separability of the
frozen features (separability) and Grad-CAM heat maps (gradcam)."""
