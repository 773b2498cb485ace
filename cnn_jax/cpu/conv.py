"""A 2-D convolution that trains fast on CPUs, inside compiled loops or not.

`cnn_jax.cpu.Conv` is `flax.linen.Conv` with `conv_general_dilated` set to this module's. On
a CPU, a plain float32 NHWC x HWIO convolution and both its gradients run oneDNN's kernels, the
library PyTorch trains with (`cnn_jax.native.onednn`), where they are checked against XLA's
(`cnn_jax.native.check`): XLA's own CPU kernels compute the weight gradient several times more
slowly (docs/cpu_performance.md). Where oneDNN is not installed, the gradients are XLA
convolutions in the one layout its CPU backend runs fast inside loops (`canonical_conv`).
`lax.platform_dependent` keeps lax's convolution for any other platform.

Dilated, grouped and non-2-D convolutions go to `lax.conv_general_dilated` unchanged. oneDNN's
gradients are not differentiable again: for second derivatives on a CPU, set
`CNN_JAX_ONEDNN=0`.
"""

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from cnn_jax.cpu import canonical_conv
from cnn_jax.native import check, onednn

NHWC = canonical_conv.NHWC


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """`lax.conv_general_dilated`, with fast CPU kernels for plain NHWC/HWIO 2-D convolutions."""
    plain = (
        lhs.ndim == 4
        and feature_group_count == 1
        and batch_group_count == 1
        and all(d == 1 for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ()))
        and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == NHWC
    )
    if not plain:
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, batch_group_count, precision, preferred_element_type,
        )
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    strides = tuple(int(s) for s in window_strides)
    if rhs.shape[:2] == (1, 1) and strides != (1, 1):
        lhs, pads, strides = _unit_stride(lhs, pads, strides), ((0, 0), (0, 0)), (1, 1)
    return _conv(lhs, rhs, strides, pads, precision, preferred_element_type)


def _unit_stride(x: jax.Array, pads, strides) -> jax.Array:
    """The pixels a strided 1x1 convolution reads, so that it runs with stride 1.

    oneDNN's strided 1x1 weight-gradient kernels write past the end of their buffers where the
    input channels do not fill a vector register (see docs/cpu_performance.md); the sliced
    convolution is the same function and never reaches them.
    """
    spatial = tuple((lo, hi, 0) for lo, hi in pads)
    x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), *spatial, (0, 0, 0)))
    return x[:, :: strides[0], :: strides[1], :]


def _lax_conv(x, w, strides, pads, precision, preferred_element_type=None):
    return lax.conv_general_dilated(
        x, w, strides, pads, dimension_numbers=NHWC, precision=precision,
        preferred_element_type=preferred_element_type,
    )


def _uses_onednn(x: jax.Array, w: jax.Array, strides, pads, preferred_element_type) -> bool:
    """oneDNN takes non-empty float32 convolutions with non-negative padding, where JAX runs on
    one CPU and its kernels for the shape agree with XLA's here (`check.trusted`).

    XLA cannot split a foreign kernel over devices: on several (simulated CPU devices, CPU
    processes) it would run every call on the whole batch, so those keep XLA's convolutions.
    """
    padded = [size + lo + hi for size, (lo, hi) in zip(x.shape[1:3], pads)]
    return (
        x.dtype == w.dtype == jnp.float32
        and preferred_element_type in (None, jnp.float32)
        and all(p >= 0 for pair in pads for p in pair)
        and x.size > 0 and w.size > 0 and all(n >= k for n, k in zip(padded, w.shape[:2]))
        and jax.default_backend() == "cpu"
        and jax.device_count() == 1
        and onednn.available()
        and check.trusted(check.Convolution(x.shape, w.shape, strides, pads))
    )


def _forward(x, w, strides, pads, precision, preferred_element_type):
    lax_conv = functools.partial(
        _lax_conv, strides=strides, pads=pads, precision=precision,
        preferred_element_type=preferred_element_type,
    )
    if not _uses_onednn(x, w, strides, pads, preferred_element_type):
        return lax_conv(x, w)
    cpu = functools.partial(onednn.forward, strides=strides, padding=pads)
    return lax.platform_dependent(x, w, cpu=cpu, default=lax_conv)


_conv = jax.custom_vjp(_forward, nondiff_argnums=(2, 3, 4, 5))


def _conv_fwd(x, w, strides, pads, precision, preferred_element_type):
    return _forward(x, w, strides, pads, precision, preferred_element_type), (x, w)


def _conv_bwd(strides, pads, precision, preferred_element_type, residuals, dy):
    x, w = residuals
    dy = dy.astype(x.dtype)
    lax_grads = lambda x, w, dy: jax.vjp(
        lambda x, w: _lax_conv(x, w, strides, pads, precision), x, w
    )[1](dy)
    if _uses_onednn(x, w, strides, pads, preferred_element_type):
        cpu_grads = lambda x, w, dy: (
            onednn.input_grad(dy, w, x.shape, strides, pads),
            onednn.weight_grad(x, dy, w.shape, strides, pads),
        )
    else:
        cpu_grads = functools.partial(
            canonical_conv.grads, strides=strides, pads=pads, precision=precision
        )
    return lax.platform_dependent(x, w, dy, cpu=cpu_grads, default=lax_grads)


_conv.defvjp(_conv_fwd, _conv_bwd)
