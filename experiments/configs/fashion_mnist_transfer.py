"""Transfer within the zoo: a CIFAR ResNet-20 (width 8) trained on Fashion-MNIST classes 0-4
(T-shirt, trouser, pullover, dress, coat), fine-tuned on classes 5-9 (sandal, shirt, sneaker,
bag, ankle boot) from 1,000 training images, against the same net trained from scratch on
the same 1,000 images.

    D="--config.dataset.source=files --config.dataset.data_dir=/usr/share/datasets/fashion-mnist"
    python -m experiments.train --config=fashion_mnist_transfer:pretrain $D \\
        --workdir=runs/transfer/pretrain_s0
    python -m experiments.train --config=fashion_mnist_transfer:finetune $D \\
        --config.init.workdir=runs/transfer/pretrain_s0 --workdir=runs/transfer/finetune_s0
    python -m experiments.train --config=fashion_mnist_transfer:scratch $D \\
        --workdir=runs/transfer/scratch_s0

(`--config.seed=N` for other seeds.) Fine-tuning copies every layer but the classifier (a
new 5-way head for the new classes) and trains all of them at a tenth of the scratch
learning rate. Test error on the 5,000 test images of classes 5-9: see the README.

Arguments: pretrain | finetune | scratch (required).
"""

import ml_collections

from cnn_jax.errors import ConfigError
from experiments.configs import _cifar

ARGS = ("pretrain", "finetune", "scratch")
SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
TARGET_EXAMPLES = 1_000


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in ARGS:
        raise ConfigError(f"fashion_mnist_transfer needs an argument, one of {', '.join(ARGS)}.")
    config = _cifar.get_config("cifar_resnet20")
    config.name = f"fashion_mnist_transfer_{arg}"
    config.model.width = 8
    config.dataset.name = "fashion_mnist"
    config.train.diagnostics_every_steps = 0
    config.train.log_every_steps = 50
    config.eval.batch_size = 500
    config.checkpoint.keep = 1
    config.schedule.warmup_steps = 0
    if arg == "pretrain":  # 30,000 images, 2.6 epochs
        config.dataset.classes = SOURCE_CLASSES
        steps = 600
    else:  # 1,000 images, 19 epochs
        config.dataset.classes = TARGET_CLASSES
        config.dataset.train_examples = TARGET_EXAMPLES
        config.train.batch_size = 64
        steps = 300
    config.train.steps = steps
    config.schedule.boundaries = (steps // 2, steps * 3 // 4)
    config.eval.every_steps = config.checkpoint.every_steps = steps
    if arg == "finetune":
        config.optimizer.lr = 0.01
        config.init.exclude = ("head",)  # a new classifier for the new classes
    return config
