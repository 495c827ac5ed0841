"""Training: the loop every trained model shares (fit), and fine-tuning block 5 and a head on
images (finetune), for the image-level mode."""
