"""Small shared helpers: errors, devices, checkpoints, pretrained weights, image I/O."""
