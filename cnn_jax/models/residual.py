"""The residual blocks of He et al. 2015, shared by the CIFAR and the ImageNet nets.

Shortcut options (section 3.3): A is the identity, subsampled by 2 and zero-padded to the new
width where the shape changes (no parameters); B projects with a 1x1 convolution + BN where
the shape changes; C projects in every block. A plain block is the same block without the
shortcut.
"""

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.models import layers

SHORTCUT_OPTIONS = ("A", "B", "C")


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


def add_shortcut(block: nn.Module, branch: jnp.ndarray, shortcut: jnp.ndarray) -> jnp.ndarray:
    """F(x) + x. Sows ||F(x)|| / ||x|| into the `diagnostics` collection when it is mutable (and
    not at init, so variables hold only params and batch_stats): how much the residual function
    changes the signal (section 4.2, Figure 7)."""
    if block.is_mutable_collection("diagnostics") and not block.is_initializing():
        norm = lambda a: jnp.sqrt(jnp.sum(jnp.square(a.astype(jnp.float32))))
        block.sow("diagnostics", "residual_ratio", norm(branch) / (norm(shortcut) + 1e-12))
    return branch + shortcut


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BN; the shortcut (if residual) joins before the last ReLU.

    `keep` (lesion studies, Veit et al. 2016) scales the block; 0 deletes it, leaving a
    residual block's shortcut, or the identity in a plain block of unchanged shape. A deleted
    block is not computed.
    """

    filters: int
    strides: int
    residual: bool
    shortcut: str
    conv: layers.ModuleDef
    norm: layers.ModuleDef
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x: jnp.ndarray, keep: jnp.ndarray | None = None) -> jnp.ndarray:
        if self.residual:
            shortcut = Shortcut(self.filters, self.strides, self.shortcut, self.conv, self.norm)(x)
            if keep is None:
                y = self.branch(x)
            else:
                y = nn.cond(
                    keep != 0,
                    lambda block, x, keep, s: keep.astype(s.dtype) * block.branch(x),
                    lambda block, x, keep, s: jnp.zeros_like(s),
                    self, x, keep, shortcut,
                    variables=_READ_ONLY,
                )
            return self.act(add_shortcut(self, y, shortcut))
        if keep is None or self.strides != 1 or x.shape[-1] != self.filters:
            return self.act(self.branch(x))
        return nn.cond(
            keep != 0,
            lambda block, x, keep: _mix(keep, block.act(block.branch(x)), x),
            lambda block, x, keep: x,
            self, x, keep,
            variables=_READ_ONLY,
        )

    def branch(self, x: jnp.ndarray) -> jnp.ndarray:
        """F(x): conv, BN, ReLU, conv, BN (in a plain block, its layers before the last ReLU)."""
        y = self.conv(self.filters, (3, 3), strides=self.strides)(x)
        y = self.act(self.norm()(y))
        y = self.conv(self.filters, (3, 3))(y)
        return self.norm()(y)


_READ_ONLY = ("params", "batch_stats")  # what the layers of a block read when it may be deleted


def _mix(keep: jnp.ndarray, y: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    keep = keep.astype(y.dtype)
    return keep * y + (1 - keep) * x
