"""Fine-tune torchvision's ImageNet ResNet-18 on CIFAR-10.

    python -m experiments.convert --model=resnet18 --weights=resnet18.safetensors \\
        --workdir=runs/converted/resnet18
    python -m experiments.train --config=finetune_resnet18_cifar10 \\
        --config.init.workdir=runs/converted/resnet18

The CIFAR images (minus their per-pixel mean, cropped and flipped as in He et al. 2015) are
resized on the device to `augment.resize` = 128 pixels. Every layer but the classifier comes
from the converted checkpoint; the 1000-way head does not fit the 10 classes and is left at
its fresh initialization. The head learns at lr 0.01, the backbone at a tenth of it
(`optimizer.backbone_lr_factor`); 10 epochs, the rate divided by 10 at 50% and 75%.

Argument `smoke`: 10 iterations at batch 16 on 64-pixel inputs, evaluation on 200 images.
"""

import ml_collections

from cnn_jax.errors import ConfigError
from experiments.configs import _cifar

EPOCH = 391  # iterations per epoch of 50,000 images at batch 128


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in (None, "smoke"):
        raise ConfigError(f"Unknown config argument {arg!r}; known: smoke.")
    config = _cifar.get_config("cifar_resnet20", arg)
    config.name = "finetune_resnet18_cifar10" + (f"_{arg}" if arg else "")
    config.model = ml_collections.ConfigDict(
        {"name": "resnet18", "dtype": "auto", "bn_group_size": 0}
    )
    config.augment.resize = 128
    config.optimizer.lr = 0.01
    config.optimizer.backbone_lr_factor = 0.1
    config.optimizer.head = ("head",)
    config.train.steps = 10 * EPOCH
    config.train.diagnostics_every_steps = 0
    config.schedule.boundaries = (5 * EPOCH, 7 * EPOCH)
    config.schedule.warmup_steps = 0
    config.eval.every_steps = 2 * EPOCH
    config.checkpoint.every_steps = 2 * EPOCH
    if arg == "smoke":
        config.augment.resize = 64
        config.train.batch_size = 16
        config.train.steps = 10
        config.train.log_every_steps = 5
        config.schedule.boundaries = (5, 8)
        config.eval.every_steps = config.checkpoint.every_steps = 10
        config.eval.max_examples = 200
    return config
