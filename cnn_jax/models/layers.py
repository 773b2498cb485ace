"""Building blocks shared by the model families."""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ModuleDef = Callable[..., nn.Module]

# He et al. 2015 ("Delving deep into rectifiers"): zero-mean Gaussian, std sqrt(2 / fan_in).
he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def conv(dtype: Any = jnp.float32, module: ModuleDef = nn.Conv) -> ModuleDef:
    """A bias-free convolution with He-normal init (BN follows it), padding k // 2 on each side.

    The papers' Caffe/Torch code pads symmetrically, so a stride-2 convolution's output pixel i
    is centred on input pixel 2i, where option A's subsampled shortcut `x[::2]` reads; 'SAME'
    would pad (0, 1) and centre it on 2i + 1. `padding=` overrides it (Inception's "V" layers).
    `module` is the convolution a model was given (`flax.linen.Conv` unless replaced).
    """

    def make(features: int, kernel_size: tuple[int, ...], **kwargs: Any) -> nn.Module:
        kwargs.setdefault("padding", [(k // 2, k // 2) for k in kernel_size])
        kwargs.setdefault("use_bias", False)
        return module(features, kernel_size, kernel_init=he_normal, dtype=dtype, **kwargs)

    return make


def batch_norm(train: bool, dtype: Any = jnp.float32) -> ModuleDef:
    """BatchNorm as in the papers' Torch/Caffe code: momentum 0.9, epsilon 1e-5."""
    return functools.partial(
        nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype
    )


class LocalResponseNorm(nn.Module):
    """Local response normalization across channels (Krizhevsky et al. 2012, section 3.3).

    The paper's formula, on NHWC maps with N channels:

        b^i = a^i / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} (a^j)^2) ^ beta

    with n/2 rounded down, so each channel sees the n (odd n) channels centred on it and the
    window is clipped at the first and last channel. Note alpha multiplies the sum itself;
    Caffe's and PyTorch's LRN layers divide alpha by n. Defaults are the paper's k=2, n=5,
    alpha=1e-4, beta=0.75 (which VGG's A-LRN reuses). Computed in float32, returned in the
    input dtype. No parameters.
    """

    n: int = 5
    k: float = 2.0
    alpha: float = 1e-4
    beta: float = 0.75

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        a = x.astype(jnp.float32)
        half = self.n // 2
        # Zero-padding the channel axis clips the window at the edges.
        sums = jax.lax.reduce_window(
            a * a,
            0.0,
            jax.lax.add,
            window_dimensions=(1,) * (a.ndim - 1) + (2 * half + 1,),
            window_strides=(1,) * a.ndim,
            padding=((0, 0),) * (a.ndim - 1) + ((half, half),),
        )
        return (a / (self.k + self.alpha * sums) ** self.beta).astype(x.dtype)


def adaptive_avg_pool(x: jnp.ndarray, output_size: tuple[int, int]) -> jnp.ndarray:
    """PyTorch's AdaptiveAvgPool2d on NHWC maps (torchvision's AlexNet and VGG heads).

    Output cell i along an axis of length L averages inputs floor(i L / out) to
    ceil((i + 1) L / out) - 1; the windows overlap or repeat inputs when L is not a multiple
    of out, and it is the identity when L == out.
    """
    height, width = x.shape[1:3]
    if (height, width) == tuple(output_size):
        return x

    def averaging(length: int, out: int) -> np.ndarray:
        weights = np.zeros((out, length), np.float32)
        for i in range(out):
            start, end = (i * length) // out, -(-(i + 1) * length // out)
            weights[i, start:end] = 1.0 / (end - start)
        return weights

    rows = jnp.asarray(averaging(height, output_size[0]), x.dtype)
    cols = jnp.asarray(averaging(width, output_size[1]), x.dtype)
    return jnp.einsum("nhwc,ih,jw->nijc", x, rows, cols)
