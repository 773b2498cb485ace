"""oneDNN's convolution kernels inside compiled JAX programs on CPUs, through XLA's FFI.

XLA's own CPU convolutions (Eigen's) compute weight gradients at about half the speed of
oneDNN's, the library PyTorch trains with on CPUs. `onednn_conv.cc` wraps oneDNN's forward,
input-gradient and weight-gradient kernels as XLA FFI handlers; `build` compiles it the first
time it is needed (a C++ compiler and oneDNN: `pip install "cnn_jax[cpu]"`), and this module
loads it and registers the handlers with JAX. Where the library cannot be built or loaded, or
`CNN_JAX_ONEDNN=0`, `available()` is False (with one warning saying why) and
`cnn_jax.cpu.conv` uses XLA's kernels.
"""

import functools
import logging
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.native import build

log = logging.getLogger(__name__)

TARGETS = (
    "cnn_jax_onednn_conv_forward",
    "cnn_jax_onednn_conv_input_grad",
    "cnn_jax_onednn_conv_weight_grad",
)
Padding = Sequence[tuple[int, int]]


@functools.cache
def available() -> bool:
    """Builds (once per environment), loads and registers the handlers; False where that fails."""
    if os.environ.get("CNN_JAX_ONEDNN", "1") == "0":
        return False
    try:
        library = build.load_library()
        for name in TARGETS:
            capsule = jax.ffi.pycapsule(getattr(library, name))
            jax.ffi.register_ffi_target(name, capsule, platform="cpu")
    except (build.BuildError, OSError, AttributeError, RuntimeError) as e:
        log.warning(
            "oneDNN's convolutions are not available (%s); CPU convolutions use XLA's, and "
            "training runs about 1.5x slower. A C++ compiler (`apt-get install g++`) and "
            '`pip install "cnn_jax[cpu]"` provide them; CNN_JAX_ONEDNN=0 silences this.', e,
        )
        return False
    return True


def output_shape(
    x_shape: Sequence[int], w_shape: Sequence[int], strides: Sequence[int], padding: Padding
) -> tuple[int, ...]:
    """NHWC output shape of an NHWC x HWIO convolution."""
    spatial = [
        (size + lo + hi - k) // s + 1
        for size, k, s, (lo, hi) in zip(x_shape[1:3], w_shape[:2], strides, padding)
    ]
    return (x_shape[0], *spatial, w_shape[3])


def forward(x: jax.Array, w: jax.Array, strides: Sequence[int], padding: Padding) -> jax.Array:
    """The convolution of float32 NHWC images with an HWIO kernel."""
    return _call(
        TARGETS[0], output_shape(x.shape, w.shape, strides, padding), x, w, strides, padding
    )


def input_grad(
    dy: jax.Array, w: jax.Array, x_shape: Sequence[int], strides: Sequence[int], padding: Padding
) -> jax.Array:
    """The gradient with respect to the images, given the output gradient dy."""
    return _call(TARGETS[1], tuple(x_shape), dy, w, strides, padding)


def weight_grad(
    x: jax.Array, dy: jax.Array, w_shape: Sequence[int], strides: Sequence[int], padding: Padding
) -> jax.Array:
    """The gradient with respect to the kernel, given the images and the output gradient dy."""
    return _call(TARGETS[2], tuple(w_shape), x, dy, strides, padding)


def _call(
    target: str, shape: tuple[int, ...], a: jax.Array, b: jax.Array, strides, padding
) -> jax.Array:
    # Under vmap (seeds trained together, BatchNorm groups) the handler runs once per element.
    call = jax.ffi.ffi_call(
        target, jax.ShapeDtypeStruct(shape, jnp.float32), vmap_method="sequential"
    )
    return call(
        a, b, strides=np.asarray(strides, np.int64), padding=np.asarray(padding, np.int64).ravel()
    )
