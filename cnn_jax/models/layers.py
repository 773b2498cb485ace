"""Building blocks shared by the model families."""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

ModuleDef = Callable[..., nn.Module]

# He et al. 2015 ("Delving deep into rectifiers"): zero-mean Gaussian, std sqrt(2 / fan_in).
he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def conv(dtype: Any = jnp.float32) -> ModuleDef:
    """A bias-free convolution with 'SAME' padding and He-normal init (BN follows it)."""
    return functools.partial(
        nn.Conv, use_bias=False, padding="SAME", kernel_init=he_normal, dtype=dtype
    )


def batch_norm(train: bool, dtype: Any = jnp.float32) -> ModuleDef:
    """BatchNorm as in the papers' Torch/Caffe code: momentum 0.9, epsilon 1e-5."""
    return functools.partial(
        nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype
    )
