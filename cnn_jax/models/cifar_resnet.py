"""ResNets and their plain counterparts for CIFAR-10 (He et al. 2015, section 4.2).

The paper's table for the 6n+2-layer nets:

    output map size   32x32   16x16   8x8
    # layers          1+2n    2n      2n
    # filters         16      32      64

A 3x3 convolution with 16 filters, then three stages of n two-layer blocks,
global average pooling and a 10-way fully-connected layer. The first
convolution of stages 2 and 3 has stride 2. BN follows every convolution; a
ResNet adds one shortcut per block, a plain net has none. Shortcut options
(section 3.3): A is the identity, subsampled by 2 and zero-padded to the new
width where the shape changes (no parameters, CIFAR's choice); B projects with
a 1x1 convolution + BN where the shape changes; C projects in every block.
"""

import functools
import re
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ConfigError
from cnn_jax.models import layers

STAGE_FILTERS = (16, 32, 64)  # at the paper's width of 16
STAGE_STRIDES = (1, 2, 2)
SHORTCUT_OPTIONS = ("A", "B", "C")


def blocks_per_stage(depth: int) -> int:
    """n for a 6n+2-layer net; any other depth is an error."""
    if depth < 8 or (depth - 2) % 6:
        raise ConfigError(
            f"CIFAR nets have 6n+2 layers (20, 32, 44, 56, 110, 1202, ...); depth {depth} is not."
        )
    return (depth - 2) // 6


class Shortcut(nn.Module):
    """The identity path of a residual block, under options A, B or C."""

    filters: int
    strides: int
    option: str
    conv: layers.ModuleDef
    norm: layers.ModuleDef

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        reshapes = self.strides != 1 or x.shape[-1] != self.filters
        if self.option == "C" or (self.option == "B" and reshapes):
            x = self.conv(self.filters, (1, 1), strides=self.strides, name="proj_conv")(x)
            return self.norm(name="proj_bn")(x)
        if not reshapes:
            return x
        # Option A: subsample the identity, zero-pad the new channels.
        x = x[:, :: self.strides, :: self.strides, :]
        return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, self.filters - x.shape[-1])))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BN; the shortcut (if residual) joins before the last ReLU."""

    filters: int
    strides: int
    residual: bool
    shortcut: str
    conv: layers.ModuleDef
    norm: layers.ModuleDef

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = self.conv(self.filters, (3, 3), strides=self.strides)(x)
        y = nn.relu(self.norm()(y))
        y = self.conv(self.filters, (3, 3))(y)
        y = self.norm()(y)
        if self.residual:
            y = y + Shortcut(self.filters, self.strides, self.shortcut, self.conv, self.norm)(x)
        return nn.relu(y)


class CifarResNet(nn.Module):
    """A 6n+2-layer CIFAR ResNet (residual=True) or plain net (residual=False).

    Attributes:
      depth: weighted layers, 6n+2.
      num_classes: outputs of the final dense layer.
      residual: add the shortcuts (ResNet) or not (plain net).
      shortcut: "A", "B" or "C" (section 3.3); ignored by plain nets.
      width: filters of the first stage (16 in the paper); stages use width x (1, 2, 4).
      dtype: computation dtype; parameters and BN statistics stay float32.
    """

    depth: int
    num_classes: int = 10
    residual: bool = True
    shortcut: str = "A"
    width: int = 16
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        blocks_per_stage(self.depth)
        if self.shortcut not in SHORTCUT_OPTIONS:
            raise ConfigError(f"shortcut must be one of {SHORTCUT_OPTIONS}, got {self.shortcut!r}.")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        conv = layers.conv(self.dtype)
        norm = layers.batch_norm(train, self.dtype)
        n = blocks_per_stage(self.depth)
        scale = self.width / STAGE_FILTERS[0]

        x = conv(self.width, (3, 3), name="stem_conv")(x.astype(self.dtype))
        x = nn.relu(norm(name="stem_bn")(x))
        for stage, (filters, strides) in enumerate(zip(STAGE_FILTERS, STAGE_STRIDES)):
            for block in range(n):
                x = BasicBlock(
                    filters=round(filters * scale),
                    strides=strides if block == 0 else 1,
                    residual=self.residual,
                    shortcut=self.shortcut,
                    conv=conv,
                    norm=norm,
                    name=f"stage{stage + 1}_block{block + 1}",
                )(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)


PAPER_DEPTHS = {"resnet": (20, 32, 44, 56, 110, 1202), "plain": (20, 32, 44, 56, 110)}
NAME_PATTERN = re.compile(r"cifar_(resnet|plain)(\d+)")


def from_name(name: str) -> functools.partial | None:
    """`cifar_resnet<depth>` / `cifar_plain<depth>` for any 6n+2 depth, else None."""
    match = NAME_PATTERN.fullmatch(name)
    if match is None:
        return None
    kind, depth = match.group(1), int(match.group(2))
    return functools.partial(CifarResNet, depth=depth, residual=kind == "resnet")


MODELS = {
    f"cifar_{kind}{depth}": from_name(f"cifar_{kind}{depth}")
    for kind, depths in PAPER_DEPTHS.items()
    for depth in depths
}
