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

Convolutions pad k // 2 on each side, as the papers' Torch/Caffe code does: a stride-2 3x3
convolution's output pixel i is centred on input pixel 2i, which is the pixel option A's
subsampled shortcut and option B's 1x1 stride-2 projection read, so F(x) and x are aligned.
"""

import functools
import re
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.errors import ConfigError
from cnn_jax.models import layers
from cnn_jax.models.residual import SHORTCUT_OPTIONS, BasicBlock

STAGE_FILTERS = (16, 32, 64)  # at the paper's width of 16
STAGE_STRIDES = (1, 2, 2)


def blocks_per_stage(depth: int) -> int:
    """n for a 6n+2-layer net; any other depth is an error."""
    if depth < 8 or (depth - 2) % 6:
        raise ConfigError(
            f"CIFAR nets have 6n+2 layers (20, 32, 44, 56, 110, 1202, ...); depth {depth} is not."
        )
    return (depth - 2) // 6


class RepeatedBlock(nn.Module):
    """A BasicBlock in the (carry, input) -> (carry, output) form `nn.scan` iterates."""

    block: functools.partial

    @nn.compact
    def __call__(self, x: jnp.ndarray, keep: jnp.ndarray | None) -> tuple[jnp.ndarray, None]:
        return self.block(name="block")(x, keep), None


class CifarResNet(nn.Module):
    """A 6n+2-layer CIFAR ResNet (residual=True) or plain net (residual=False).

    Attributes:
      depth: weighted layers, 6n+2.
      num_classes: outputs of the final dense layer.
      residual: add the shortcuts (ResNet) or not (plain net).
      shortcut: "A", "B" or "C" (section 3.3); ignored by plain nets.
      width: filters of the first stage (16 in the paper); stages use width x (1, 2, 4).
      scan: run blocks 2..n of each stage, which are identical, as one `nn.scan` loop: the
        compile time no longer grows with depth. Same function; the parameters of those
        blocks are stacked (`unroll_variables` / `scan_variables` convert).
      remat: with `scan`, recompute each block's activations in the backward pass instead of
        storing them (less memory, about a third more compute).
      dtype: computation dtype; parameters and BN statistics stay float32.
      conv, act: the convolution module and the activation (flax's Conv and relu).
    """

    depth: int
    num_classes: int = 10
    residual: bool = True
    shortcut: str = "A"
    width: int = 16
    scan: bool = False
    remat: bool = False
    dtype: Any = jnp.float32
    conv: layers.ModuleDef = nn.Conv
    act: Callable = nn.relu

    def __post_init__(self) -> None:
        blocks_per_stage(self.depth)
        if self.shortcut not in SHORTCUT_OPTIONS:
            raise ConfigError(f"shortcut must be one of {SHORTCUT_OPTIONS}, got {self.shortcut!r}.")
        super().__post_init__()

    @nn.compact
    def __call__(
        self, x: jnp.ndarray, train: bool = False, keep: jnp.ndarray | None = None
    ) -> jnp.ndarray:
        """`keep`: None, or one multiplier per block in network order (see BasicBlock)."""
        conv = layers.conv(self.dtype, self.conv)
        norm = layers.batch_norm(train, self.dtype)
        n = blocks_per_stage(self.depth)
        scale = self.width / STAGE_FILTERS[0]

        x = conv(self.width, (3, 3), name="stem_conv")(x.astype(self.dtype))
        x = self.act(norm(name="stem_bn")(x))
        for stage, (filters, strides) in enumerate(zip(STAGE_FILTERS, STAGE_STRIDES)):
            block = functools.partial(
                BasicBlock,
                filters=round(filters * scale),
                residual=self.residual,
                shortcut=self.shortcut,
                conv=conv,
                norm=norm,
                act=self.act,
            )
            keeps = [None] * n if keep is None else keep[stage * n:(stage + 1) * n]
            x = block(strides=strides, name=f"stage{stage + 1}_block1")(x, keeps[0])
            if self.scan and n > 1:
                repeated = nn.remat(RepeatedBlock) if self.remat else RepeatedBlock
                blocks = nn.scan(
                    repeated,
                    variable_axes={"params": 0, "batch_stats": 0, "diagnostics": 0},
                    split_rngs={"params": True},
                    length=n - 1,
                )
                rest = None if keep is None else keeps[1:]
                x, _ = blocks(functools.partial(block, strides=1), name=f"stage{stage + 1}_blocks")(
                    x, rest
                )
                continue
            for i in range(2, n + 1):
                x = block(strides=1, name=f"stage{stage + 1}_block{i}")(x, keeps[i - 1])
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)


def scan_variables(variables: dict[str, Any]) -> dict[str, Any]:
    """Variables of an unrolled net -> those of the same net with `scan=True`."""
    out = {}
    for collection, tree in variables.items():
        tree, stacked = dict(tree), {}
        for name in sorted(tree, key=_block_order):
            match = re.fullmatch(r"(stage\d+)_block(\d+)", name)
            if match and int(match.group(2)) > 1:
                stacked.setdefault(f"{match.group(1)}_blocks", []).append(tree.pop(name))
        tree.update(
            {k: {"block": jax.tree.map(lambda *x: jnp.stack(x), *v)} for k, v in stacked.items()}
        )
        out[collection] = tree
    return out


def unroll_variables(variables: dict[str, Any]) -> dict[str, Any]:
    """Variables of a net with `scan=True` -> those of the same net unrolled."""
    out = {}
    for collection, tree in variables.items():
        tree = dict(tree)
        for name in [k for k in tree if k.endswith("_blocks")]:
            stacked = tree.pop(name)["block"]
            for i in range(jax.tree.leaves(stacked)[0].shape[0]):
                tree[f"{name.removesuffix('_blocks')}_block{i + 2}"] = jax.tree.map(
                    lambda x: x[i], stacked
                )
        out[collection] = tree
    return out


def _block_order(name: str) -> tuple[str, int]:
    match = re.fullmatch(r"(stage\d+)_block(\d+)", name)
    return (match.group(1), int(match.group(2))) if match else (name, 0)


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
