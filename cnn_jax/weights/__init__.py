"""Pretrained weights from PyTorch: torchvision's and timm's state dicts into the zoo's nets."""
