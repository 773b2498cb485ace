"""The model zoo: `create(name, num_classes=..., **overrides)` and `names()`.

Every model is a Flax Linen module called as `module.apply(variables, x, train=...)`
on NHWC float images, returning logits.
"""

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

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

    `bn_group_size` is not an attribute: the train step applies it (see
    `cnn_jax.training.steps.apply_in_groups`).
    """
    overrides = {k: v for k, v in config.items() if k not in ("name", "bn_group_size")}
    if "dtype" in overrides:
        overrides["dtype"] = jnp.dtype(overrides["dtype"])
    try:
        return create(config.name, num_classes=num_classes, **overrides)
    except TypeError as e:  # An attribute this model does not have.
        raise ConfigError(f"model {config.name!r}: {e}") from None
