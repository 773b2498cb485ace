"""The model zoo: `create(name, num_classes=..., **overrides)` and `names()`.

Every model is a Flax Linen module called as `module.apply(variables, x, train=...)`
on NHWC float images, returning logits.
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from cnn_jax import cpu
from cnn_jax.errors import ConfigError
from cnn_jax.models import alexnet, cifar_resnet, googlenet, inception_v4, lenet, resnet, vgg

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    **lenet.MODELS,
    **alexnet.MODELS,
    **vgg.MODELS,
    **googlenet.MODELS,
    **resnet.MODELS,
    **inception_v4.MODELS,
    **cifar_resnet.MODELS,
}


# Native input sizes (height = width, channels) by name prefix; everything else is ImageNet's.
_INPUT_SHAPES = {
    "cifar_": (32, 3),
    "lenet5": (32, 1),
    "alexnet_owt": (224, 3),
    "alexnet": (227, 3),
    "inception_": (299, 3),
}


def input_shape(name: str, size: int | None = None) -> tuple[int, int, int]:
    """(height, width, channels) the model `name` was designed for, or at `size` pixels."""
    native, channels = next(
        (shape for prefix, shape in _INPUT_SHAPES.items() if name.startswith(prefix)), (224, 3)
    )
    return (size or native, size or native, channels)


def names() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def create(name: str, num_classes: int | None = None, **overrides: Any) -> nn.Module:
    """Builds the model `name`; `overrides` set its attributes (width, shortcut, dtype, ...).

    Besides the registered names, `cifar_resnet<depth>` and `cifar_plain<depth>` accept any
    6n+2 depth.
    """
    constructor = _REGISTRY.get(name) or cifar_resnet.from_name(name)
    if constructor is None:
        raise ConfigError(f"Unknown model {name!r}; known models: {', '.join(names())}.")
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    return constructor(**overrides)


def from_config(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
    """The model of a config's `model` section: `name` plus attribute overrides.

    `dtype` "auto" computes in bfloat16 on TPUs and in float32 elsewhere (parameters and BN
    statistics stay float32). `bn_group_size` is not an attribute: the train step applies
    it (see `cnn_jax.training.steps.apply_in_groups`). Where JAX runs on a CPU the model gets
    the CPU variants of its convolution and activation (`cnn_jax.cpu`); elsewhere flax's.
    """
    overrides = {k: v for k, v in config.items() if k not in ("name", "bn_group_size")}
    if overrides.get("dtype") == "auto":  # bfloat16 where the hardware is built for it
        overrides["dtype"] = "bfloat16" if jax.default_backend() == "tpu" else "float32"
    if "dtype" in overrides:
        overrides["dtype"] = jnp.dtype(overrides["dtype"])
    if jax.default_backend() == "cpu":
        overrides = {**cpu_ops(config.name), **overrides}
    try:
        return create(config.name, num_classes=num_classes, **overrides)
    except TypeError as e:  # An attribute this model does not have.
        raise ConfigError(f"model {config.name!r}: {e}") from None


def cpu_ops(name: str) -> dict[str, Any]:
    """The CPU variants of the operations the model `name` takes as attributes."""
    constructor = _REGISTRY.get(name) or cifar_resnet.from_name(name)
    module = getattr(constructor, "func", constructor)
    return cpu.model_ops({field.name for field in dataclasses.fields(module)})
