"""oneDNN's convolution kernels inside compiled JAX programs on CPUs, through XLA's FFI.

XLA's own CPU convolutions (Eigen's) compute weight gradients at about half the speed of
oneDNN's, the library PyTorch trains with on CPUs. `onednn_conv.cc` wraps oneDNN's forward,
input-gradient and weight-gradient kernels as XLA FFI handlers. This module compiles it the
first time it is needed (a C++ compiler and oneDNN's headers: `apt-get install g++
libdnnl-dev`) into `~/.cache/cnn_jax/native`, once per version of the source, the compiler
command and jaxlib, loads it and registers the handlers with JAX. Where the library cannot be
built or loaded, or `CNN_JAX_ONEDNN=0`, `available()` is False (with one warning saying why)
and `cnn_jax.models.cpu_conv` uses XLA's kernels.
"""

import ctypes
import functools
import hashlib
import logging
import os
import pathlib
import shlex
import subprocess
import tempfile
from typing import Sequence

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

log = logging.getLogger(__name__)

SOURCE = pathlib.Path(__file__).with_name("onednn_conv.cc")
TARGETS = (
    "cnn_jax_onednn_conv_forward",
    "cnn_jax_onednn_conv_input_grad",
    "cnn_jax_onednn_conv_weight_grad",
)
COMPILER_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC")
Padding = Sequence[tuple[int, int]]


class BuildError(Exception):
    """The handlers could not be compiled or loaded."""


def compiler() -> list[str]:
    """The C++ compiler command: $CXX (which may carry words, e.g. `ccache g++`) or c++."""
    return shlex.split(os.environ.get("CXX") or "c++")


def library_path() -> pathlib.Path:
    """Where the compiled handlers live: one file per source, compiler command and jaxlib."""
    key = [SOURCE.read_text(), jaxlib.__version__, *compiler(), *COMPILER_FLAGS]
    digest = hashlib.sha256("\0".join(key).encode()).hexdigest()[:16]
    cache = os.environ.get("XDG_CACHE_HOME", "")
    cache = pathlib.Path(cache if os.path.isabs(cache) else "~/.cache").expanduser()
    return cache / "cnn_jax" / "native" / f"onednn_conv-{digest}.so"


def build(target: pathlib.Path) -> None:
    """Compiles the handlers into `target` (atomically: concurrent builds are safe), and
    removes the libraries of earlier versions beside it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        output = pathlib.Path(scratch) / target.name
        include = f"-I{jax.ffi.include_dir()}"
        command = [*compiler(), *COMPILER_FLAGS, include, str(SOURCE), "-o", str(output), "-ldnnl"]
        try:
            result = subprocess.run(command, capture_output=True, text=True)
        except OSError as e:
            raise BuildError(f"no C++ compiler ({e.strerror}: {command[0]})") from e
        if result.returncode:
            raise BuildError(_first_error(result.stderr))
        os.replace(output, target)
    for old in target.parent.glob("onednn_conv-*.so"):
        if old != target:
            old.unlink(missing_ok=True)  # a process still using it keeps its mapping


def _first_error(stderr: str) -> str:
    """The line of a compiler's output that says what is missing."""
    lines = stderr.strip().splitlines()
    for marks in (("fatal error", "cannot find", "No such file"), ("error",)):
        found = [line for line in lines if any(mark in line for mark in marks)]
        if found:
            return found[0].strip()
    return lines[-1].strip() if lines else "the compiler failed without a message"


def load(path: pathlib.Path) -> ctypes.CDLL:
    """The compiled handlers at `path`, built first where they are missing or no longer load
    (built against a oneDNN that has since been replaced)."""
    if not path.exists():
        build(path)
    try:
        return ctypes.CDLL(str(path))
    except OSError:
        build(path)
        return ctypes.CDLL(str(path))


@functools.cache
def available() -> bool:
    """Builds (once per machine), loads and registers the handlers; False where that fails."""
    if os.environ.get("CNN_JAX_ONEDNN", "1") == "0":
        return False
    try:
        library = load(library_path())
        for name in TARGETS:
            capsule = jax.ffi.pycapsule(getattr(library, name))
            jax.ffi.register_ffi_target(name, capsule, platform="cpu")
    except (BuildError, OSError, AttributeError, RuntimeError) as e:
        log.warning(
            "oneDNN's convolutions are not available (%s); CPU convolutions use XLA's, and "
            "training runs about 1.5x slower. `apt-get install g++ libdnnl-dev` provides "
            "them; CNN_JAX_ONEDNN=0 silences this.", e,
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
