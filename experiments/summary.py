r"""The layer table of a model: output shapes, parameters and multiply-adds per image.

    python -m experiments.summary --model=resnet50
    python -m experiments.summary --model=cifar_resnet56
    python -m experiments.summary --model=vgg16 --image_size=256 --num_classes=10

The input defaults to the model's native size (32x32 for cifar_* and lenet5, 227 for alexnet,
299 for inception_*, else 224; `cnn_jax.models.input_shape`). Nothing is computed: shapes are
traced abstractly (see cnn_jax.models.summary). The table is of the inference net; the last
line printed is its totals line, e.g. ResNet-50 at 224x224: 25,557,032 parameters and 3.86G
multiply-adds (Table 1: 3.8 x 10^9).
"""

import logging

from absl import flags

from experiments import cli

_MODEL = flags.DEFINE_string("model", None, "A name from cnn_jax.models.names().", required=True)
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "Input height = width (default: the model's).")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", None, "Outputs (default: the model's).")

log = logging.getLogger("experiments.summary")


def main(argv: list[str]) -> None:
    from cnn_jax import models
    from cnn_jax.models import summary

    name = _MODEL.value
    model = models.create(name, num_classes=_NUM_CLASSES.value)
    shape = models.input_shape(name, _IMAGE_SIZE.value)
    rows = summary.layer_table(model, shape)
    params = summary.param_count(model, shape)
    log.info("%s: %d layers, %s parameters.", name, len(rows), f"{params:,}")
    print(summary.format_table(rows, name, shape, params))


if __name__ == "__main__":
    cli.run(main)
