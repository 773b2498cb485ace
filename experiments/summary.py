r"""The layer table of a model: output shapes, parameters and multiply-adds per image.

    python -m experiments.summary --model=resnet50
    python -m experiments.summary --model=cifar_resnet56
    python -m experiments.summary --model=vgg16 --image_size=256 --num_classes=10
    python -m experiments.summary --inception_modules

The input defaults to the model's native size (32x32 for cifar_* and lenet5, 227 for alexnet,
299 for inception_*, else 224; `cnn_jax.models.input_shape`). Nothing is computed: shapes are
traced abstractly (see cnn_jax.models.summary). The table is of the inference net; the last
line printed is its totals line, e.g. ResNet-50 at 224x224: 25,557,032 parameters and 3.86G
multiply-adds (Table 1: 3.8 x 10^9).

`--inception_modules` sets GoogLeNet's two Inception modules (Szegedy et al. 2014, Figure 2)
side by side on one example, a 28x28x256 input with 128 1x1, 192 3x3 and 96 5x5 filters
(module 3b's widths, Table 1): the naive module (a) outputs 128 + 192 + 96 + 256 = 672
channels from 1,089,952 parameters and 854.2M multiply-adds; with the 1x1 reductions (b) it
outputs 480 from 388,736 and 304.3M (Table 1's 3b row: 380K, 304M).
"""

import logging

from absl import flags

from experiments import cli

_MODEL = flags.DEFINE_string("model", None, "A name from cnn_jax.models.names().")
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", None, "Input height = width (default: the model's)."
)
_NUM_CLASSES = flags.DEFINE_integer("num_classes", None, "Outputs (default: the model's).")
_INCEPTION_MODULES = flags.DEFINE_boolean(
    "inception_modules", False,
    "Print GoogLeNet's naive Inception module and the one with dimension reductions (Figure 2) "
    "on a 28x28x256 input with 128, 192 and 96 filters, instead of a model's table.",
)

log = logging.getLogger("experiments.summary")

INCEPTION_EXAMPLE_INPUT = (28, 28, 256)
INCEPTION_EXAMPLE_MODULE = "3b"  # 128 1x1, (128 ->) 192 3x3, (32 ->) 96 5x5, 64 pool proj
INCEPTION_FIGURES = {"naive": "Figure 2(a)", "reductions": "Figure 2(b)"}


def inception_modules() -> str:
    """Both modules' layer tables, then one line each: output, parameters, multiply-adds."""
    import jax
    import jax.numpy as jnp

    from cnn_jax.models import googlenet, summary

    widths = googlenet.INCEPTION[INCEPTION_EXAMPLE_MODULE]
    x = jax.ShapeDtypeStruct((1, *INCEPTION_EXAMPLE_INPUT), jnp.float32)
    tables, lines = [], []
    for kind, figure in INCEPTION_FIGURES.items():
        module = googlenet.InceptionModule(widths, kind)
        rows = summary.layer_table(module, INCEPTION_EXAMPLE_INPUT)
        output = jax.eval_shape(lambda x: module.init_with_output(jax.random.key(0), x)[0], x)
        params, multiply_adds = summary.totals(rows)
        title = f"{kind} Inception module"
        tables.append(summary.format_table(rows, title, INCEPTION_EXAMPLE_INPUT))
        shape = "x".join(map(str, output.shape[1:]))
        cost = summary.human(multiply_adds)
        lines.append(f"{kind:<10}  {figure:<11}  {shape:>9}  {params:>9,}  {cost:>13}")
    header = f"{'module':<10}  {'':<11}  {'output':>9}  {'params':>9}  {'multiply-adds':>13}"
    note = "(max pooling has no parameters; in the naive module it passes all input channels on)"
    return "\n\n".join(tables + ["\n".join([header, *lines, note])])


def main(argv: list[str]) -> None:
    from cnn_jax import models
    from cnn_jax.errors import ConfigError
    from cnn_jax.models import summary

    if _INCEPTION_MODULES.value:
        print(inception_modules())
        return
    name = _MODEL.value
    if name is None:
        raise ConfigError("Give --model=NAME (see cnn_jax.models.names()) or --inception_modules.")
    model = models.create(name, num_classes=_NUM_CLASSES.value)
    shape = models.input_shape(name, _IMAGE_SIZE.value)
    rows = summary.layer_table(model, shape)
    params = summary.param_count(model, shape)
    log.info("%s: %d layers, %s parameters.", name, len(rows), f"{params:,}")
    print(summary.format_table(rows, name, shape, params))


if __name__ == "__main__":
    cli.run(main)
