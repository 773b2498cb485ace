"""Inception building blocks, shared by GoogLeNet and Inception-v4 / Inception-ResNet.

An Inception block runs parallel branches on one input and concatenates their outputs along
the channels. A branch is a sequence of layers, each written as in the papers' figures:

    "1x1 64"        1x1 convolution with 64 filters, stride 1, SAME padding; BN (if the net
                    has it) and ReLU follow every convolution
    "3x3/2 V 384"   3x3 convolution with 384 filters, stride 2, VALID padding ("V" in the
                    figures of Szegedy et al. 2016)
    "1x7 224"       a 1x7 convolution (1 row, 7 columns)
    "max 3x3/2 V"   3x3 max pooling, stride 2, VALID padding
    "avg 3x3"       3x3 average pooling, stride 1, SAME padding (the padding is not averaged)

The last element of a branch may be a tuple of layers applied in parallel to the branch so far
and concatenated: the split 1x3 / 3x1 branches of Inception-C (Szegedy et al. 2016, Figure 6).
"""

import re
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.models import layers

Branch = tuple[str | tuple[str, ...], ...]

_LAYER = re.compile(
    r"(?:(?P<pool>max|avg) )?(?P<kh>\d+)x(?P<kw>\d+)(?:/(?P<stride>\d+))?(?P<valid> V)?"
    r"(?: (?P<filters>\d+))?"
)


class Layer(NamedTuple):
    """One parsed layer: kind is "conv", "max" or "avg"; filters is None for pooling."""

    kind: str
    kernel: tuple[int, int]
    stride: int
    padding: str
    filters: int | None


def parse(layer: str) -> Layer:
    """Reads a layer written as in the figures ("3x3/2 V 384", "max 3x3/2 V", "avg 3x3")."""
    match = _LAYER.fullmatch(layer)
    if match is None or (match["pool"] is None) == (match["filters"] is None):
        raise ValueError(
            f"cannot read layer {layer!r}: expected e.g. '1x1 64', '3x3/2 V 384', 'max 3x3/2 V'."
        )
    return Layer(
        kind=match["pool"] or "conv",
        kernel=(int(match["kh"]), int(match["kw"])),
        stride=int(match["stride"] or 1),
        padding="VALID" if match["valid"] else "SAME",
        filters=int(match["filters"]) if match["filters"] else None,
    )


def branch_width(branch: Branch) -> int | None:
    """Output channels of a branch; None when it ends in pooling (it keeps its input's width)."""
    last = branch[-1]
    if isinstance(last, tuple):
        return sum(parse(layer).filters for layer in last)
    return parse(last).filters


class BasicConv(nn.Module):
    """The basic unit: convolution -> BN -> ReLU, or convolution with bias -> ReLU without BN.

    GoogLeNet as published has no BN (norm=None: the convolutions carry biases); the
    Inception-v4 family puts BN after every convolution (norm given, no bias).
    """

    features: int
    kernel_size: tuple[int, int]
    strides: int = 1
    padding: str = "SAME"
    norm: layers.ModuleDef | None = None
    dtype: Any = jnp.float32
    conv: layers.ModuleDef = nn.Conv
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = layers.conv(self.dtype, self.conv)(
            self.features,
            self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            use_bias=self.norm is None,
            name="conv",
        )(x)
        if self.norm is not None:
            x = self.norm(name="bn")(x)
        return self.act(x)


def apply_layer(x: jnp.ndarray, layer: str, conv: layers.ModuleDef, name: str) -> jnp.ndarray:
    """Applies one layer; call inside a compact method (`conv` modules join the caller)."""
    spec = parse(layer)
    strides = (spec.stride, spec.stride)
    if spec.kind == "max":
        return nn.max_pool(x, spec.kernel, strides=strides, padding=spec.padding)
    if spec.kind == "avg":
        return nn.avg_pool(
            x, spec.kernel, strides=strides, padding=spec.padding, count_include_pad=False
        )
    return conv(spec.filters, spec.kernel, strides=spec.stride, padding=spec.padding, name=name)(x)


def apply_branches(
    x: jnp.ndarray, branches: tuple[Branch, ...], conv: layers.ModuleDef
) -> jnp.ndarray:
    """Runs the branches on `x` and concatenates them; convolutions are named branch<i>_<j>."""
    outputs = []
    for i, branch in enumerate(branches, 1):
        y = x
        for j, layer in enumerate(branch, 1):
            if isinstance(layer, tuple):  # a split at the end of the branch: j-a, j-b, ...
                splits = [
                    apply_layer(y, split, conv, f"branch{i}_{j}{'abcdefgh'[k]}")
                    for k, split in enumerate(layer)
                ]
                y = jnp.concatenate(splits, axis=-1)
            else:
                y = apply_layer(y, layer, conv, f"branch{i}_{j}")
        outputs.append(y)
    return jnp.concatenate(outputs, axis=-1) if len(outputs) > 1 else outputs[0]


class Mixed(nn.Module):
    """An Inception block: parallel branches concatenated along the channels."""

    branches: tuple[Branch, ...]
    conv: layers.ModuleDef

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return apply_branches(x, self.branches, self.conv)


class Residual(nn.Module):
    """An Inception-ResNet block (Szegedy et al. 2016, Figures 10-13, 16-19).

    The concatenated branches go through a 1x1 linear filter-expansion back to the input width
    (a convolution with bias, no BN, no ReLU), are scaled by `scale` (section 3.3) and added to
    the input; ReLU follows the sum unless `relu` is False.
    """

    branches: tuple[Branch, ...]
    scale: float
    conv: layers.ModuleDef
    relu: bool = True
    dtype: Any = jnp.float32
    conv_module: layers.ModuleDef = nn.Conv  # of the filter expansion
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = apply_branches(x, self.branches, self.conv)
        expand = layers.conv(self.dtype, self.conv_module)
        y = expand(x.shape[-1], (1, 1), use_bias=True, name="expand")(y)
        x = x + self.scale * y
        return self.act(x) if self.relu else x
