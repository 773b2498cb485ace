"""Convolution gradients that XLA's CPU backend runs fast inside compiled loops.

The fallback of `cnn_jax.cpu.conv` where oneDNN is not installed. JAX differentiates a
convolution into convolutions with permuted dimension labels (the weight gradient contracts
over the batch). XLA's CPU backend turns those back into fast library calls at the top level
of a program, but not inside loops (`lax.fori_loop`, `nn.scan`), where it falls back to a
generic kernel many times slower. `grads` writes both gradients out as NHWC x HWIO -> NHWC
convolutions with explicit transposes, and computes the weight gradient in chunks of 16
images, one after another: a chunk keeps the convolution's patch buffer small, and each chunk's
transposes wait for the incoming gradient and for the previous chunk's product (`_after`), so
that they do not run during the forward pass and compete for the caches
(docs/cpu_performance.md).
"""

import jax
import jax.numpy as jnp
from jax import lax

CHUNK = 16  # images per weight-gradient convolution
NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))


def grads(
    x: jax.Array, w: jax.Array, dy: jax.Array, *, strides: tuple[int, int],
    pads: tuple[tuple[int, int], ...], precision=None,
) -> tuple[jax.Array, jax.Array]:
    """(dx, dw) of the NHWC x HWIO convolution of x and w, given its output gradient dy."""
    kernel = w.shape[:2]
    # Input gradient: dy (dilated by the stride) against the flipped kernel, in and out swapped.
    input_pads = [
        (k - 1 - lo, k - 1 - hi + (size + lo + hi - k) % s)
        for size, k, s, (lo, hi) in zip(x.shape[1:3], kernel, strides, pads)
    ]
    flipped = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
    dx = lax.conv_general_dilated(
        dy, flipped, (1, 1), input_pads, lhs_dilation=strides, dimension_numbers=NHWC,
        precision=precision,
    )
    # Weight gradient: the input channels act as the batch, the batch as the contracted feature
    # axis, and dy (dilated by the stride) as the kernel: [C, H, W, B] x [Ho, Wo, B, O].
    # Chunks run in turn, the first once dy exists (in the backward pass, not the forward one).
    chunks = x.shape[0] // CHUNK if x.shape[0] % CHUNK == 0 else 1
    dw = None
    for xc, dc in zip(jnp.split(x, chunks), jnp.split(dy, chunks)):
        xc = _after(xc, dy if dw is None else dw)
        part = lax.conv_general_dilated(
            xc.transpose(3, 1, 2, 0), dc.transpose(1, 2, 0, 3), (1, 1), pads,
            rhs_dilation=strides, dimension_numbers=NHWC, precision=precision,
        )
        dw = part if dw is None else dw + part
    dw = dw[:, : kernel[0], : kernel[1], :].transpose(1, 2, 0, 3)
    return dx.astype(x.dtype), dw.astype(w.dtype)


def _after(x: jax.Array, earlier: jax.Array) -> jax.Array:
    """x, unchanged, but computed only once `earlier` is: an exact zero read from one of its
    elements. The CPU runtime orders work by data, not by program order, and drops
    `lax.optimization_barrier`, so a real read is what holds x back."""
    element = earlier.ravel()[0]
    return x + jnp.where(jnp.isfinite(element), element, 0).astype(x.dtype) * 0
