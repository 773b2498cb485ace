"""Per-layer summaries of the models: output shapes, parameters and multiply-adds, as in the
papers' tables (He et al. 2015, Table 1; Simonyan & Zisserman 2014, Table 1; Szegedy et al.
2014, Table 1).

Nothing is computed: the model runs under `jax.eval_shape` (abstract shapes only) and
`flax.linen.intercept_methods` records every call of a module that owns parameters
(convolutions, dense layers, BatchNorm, LeNet-5's partial C3 and subsampling units), plus
the parameter-free LRN layers. Pooling, ReLU and the residual additions are functions, not
modules, and do not appear.

The summary is of the inference net (train=False): GoogLeNet's auxiliary classifiers run only
in training, so neither their parameters nor their multiply-adds are in the rows
(`param_count` counts all the variables, them included). Multiply-adds are per image and
count the weighted layers only, as the papers do: a convolution makes kh * kw * c_in / groups
per output value, a dense layer c_in per output; BN, LRN, pooling and additions count zero.

    rows = layer_table(models.create("resnet50"), (224, 224, 3))
    print(format_table(rows, "resnet50"))
"""

import dataclasses
import math
import re
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.models import layers

KINDS = ((nn.Conv, "conv"), (nn.Dense, "dense"), (nn.BatchNorm, "batch_norm"))
UNITS = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))


@dataclasses.dataclass(frozen=True)
class Layer:
    """One module call: path like "stage2_block1/Conv_0", kind ("conv", "dense", "batch_norm",
    "lrn", or the snake-cased class name), output shape (with the batch), its own parameters
    and its multiply-adds per image."""

    path: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    multiply_adds: int


def _kind(module: nn.Module) -> str:
    for cls, kind in KINDS:
        if isinstance(module, cls):
            return kind
    if isinstance(module, layers.LocalResponseNorm):
        return "lrn"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(module).__name__).lower()


def _own_params(module: nn.Module) -> dict[str, Any]:
    """The module's own parameter arrays (not those of its submodules)."""
    params = module.variables.get("params", {})
    return {name: leaf for name, leaf in params.items() if hasattr(leaf, "shape")}


def _inference_model(model: nn.Module) -> nn.Module:
    """The model with its blocks unrolled: under `nn.scan` (CIFAR nets, scan=True) a repeated
    block is traced once for all its iterations. Same function, same parameter count."""
    if getattr(model, "scan", False):
        return model.clone(scan=False)
    return model


def layer_table(
    model: nn.Module, input_shape: tuple[int, int, int], batch_size: int = 1
) -> list[Layer]:
    """The layers of `model` at inference on NHWC inputs of `input_shape`, in call order.

    `output_shape` includes the batch of `batch_size`; `multiply_adds` are per image. A module
    called twice (shared weights) gets a row per call, its parameters counted in the first.
    """
    model = _inference_model(model)
    x = jax.ShapeDtypeStruct((batch_size, *input_shape), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    rows: list[Layer] = []
    seen: set[str] = set()

    def record(call: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
        out = call(*args, **kwargs)
        module = context.module
        if context.method_name != "__call__" or not hasattr(out, "shape"):
            return out
        own = _own_params(module)
        kind = _kind(module)
        if not own and kind != "lrn":
            return out
        path = "/".join(module.path)
        kernel = own.get("kernel")
        # A conv kernel is (kh, kw, c_in / groups, c_out): kernel.size multiply-adds make one
        # output pixel (all channels); a dense kernel (c_in, c_out) makes one output vector.
        positions = math.prod(out.shape[1:-1])
        multiply_adds = kernel.size * positions if kernel is not None else 0
        params = 0 if path in seen else sum(leaf.size for leaf in own.values())
        seen.add(path)
        rows.append(Layer(path, kind, tuple(out.shape), params, multiply_adds))
        return out

    def apply(variables: Any, x: jax.Array) -> jax.Array:
        with nn.intercept_methods(record):
            return model.apply(variables, x, train=False)

    jax.eval_shape(apply, variables, x)
    return rows


def param_count(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """All the model's parameters, from its variables (training-only heads included)."""
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    return sum(leaf.size for leaf in jax.tree.leaves(variables.get("params", {})))


def totals(rows: Sequence[Layer]) -> tuple[int, int]:
    """(parameters, multiply-adds per image) of the rows."""
    return sum(r.params for r in rows), sum(r.multiply_adds for r in rows)


def human(value: float) -> str:
    """118013952 -> "118.0M", 3864000000 -> "3.86G": 2 decimals below 10, else 1."""
    for scale, suffix in UNITS:
        if value >= scale:
            value /= scale
            return f"{value:.2f}{suffix}" if value < 10 else f"{value:.1f}{suffix}"
    return str(int(value))


def format_table(
    rows: Sequence[Layer],
    model_name: str,
    input_shape: tuple[int, ...] | None = None,
    model_params: int | None = None,
) -> str:
    """The rows as a table: layer, output shape (per image), params, multiply-adds; a totals
    line last. `model_params` (see `param_count`), where it exceeds the rows' parameters,
    adds a line for those the inference net does not use (GoogLeNet's auxiliary heads)."""
    params, multiply_adds = totals(rows)
    title = model_name + (f" at {'x'.join(map(str, input_shape))}" if input_shape else "")
    lines = [
        ("layer", "output", "params", "multiply-adds"),
        *(
            (
                r.path,
                "x".join(map(str, r.output_shape[1:])),
                f"{r.params:,}",
                human(r.multiply_adds) if r.multiply_adds else "-",
            )
            for r in rows
        ),
    ]
    footer = []
    if model_params is not None and model_params > params:
        unused = model_params - params
        footer.append(("not used at inference", "", f"{unused:,}", "-"))
    footer.append(("total", "", f"{params:,}", human(multiply_adds)))
    widths = [max(len(line[i]) for line in lines + footer) for i in range(4)]

    def render(line: tuple[str, ...]) -> str:
        return "  ".join(
            [line[0].ljust(widths[0]), line[1].ljust(widths[1])]
            + [cell.rjust(width) for cell, width in zip(line[2:], widths[2:])]
        ).rstrip()

    rule = "-" * (sum(widths) + 2 * 3)
    header = f"{title}: inference (train=False), multiply-adds per image"
    return "\n".join(
        [header, render(lines[0]), rule, *map(render, lines[1:]), rule, *map(render, footer)]
    )
