"""PyTorch state dicts -> the zoo's variables (params and BatchNorm running statistics).

Every variable of ours is read from the key `torch_names` gives it, and every tensor of the
file must be read by one variable (BatchNorm's `num_batches_tracked` aside):

    convolution kernel   (out, in, h, w) -> (h, w, in, out)
    dense kernel         (out, in)       -> (in, out); the first dense layer after a
                         convolutional stack also re-orders its inputs from PyTorch's
                         C, H, W flattening to our H, W, C
    BatchNorm            weight, bias, running_mean, running_var -> scale, bias, mean, var
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax import models
from cnn_jax.errors import CheckpointError, ConfigError
from cnn_jax.training import initialize
from cnn_jax.weights import torch_names
from cnn_jax.weights.torch_names import SOURCES, Source


def names() -> list[str]:
    """The zoo names that convert from torchvision / timm weights."""
    return sorted(SOURCES)


def source(name: str) -> Source:
    if name not in SOURCES:
        known = ", ".join(f"{n} ({s.library} {s.name})" for n, s in sorted(SOURCES.items()))
        raise ConfigError(f"No converter for model {name!r}; models with one: {known}.")
    return SOURCES[name]


def create_model(name: str, num_classes: int = 1000) -> nn.Module:
    """The zoo net `name` with the attributes its PyTorch twin's weights need."""
    return models.create(name, num_classes=num_classes, **source(name).overrides)


def convert(
    name: str, state_dict: dict[str, np.ndarray], num_classes: int = 1000
) -> dict[str, Any]:
    """The variables ({"params", "batch_stats"}) of zoo net `name` from its twin's state dict."""
    twin = source(name)
    model = create_model(name, num_classes)
    size = models.input_shape(name)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, *size)), train=False)
    )
    wanted = initialize.flatten(shapes)
    keys = {leaf: _torch_key(twin, leaf[1]) for leaf in wanted}
    tensors = {k: v for k, v in state_dict.items()
               if k.rsplit(".", 1)[-1] not in torch_names.IGNORED}
    missing = [key for key in keys.values() if key not in tensors]
    described = f"{twin.library}'s {twin.name}"
    if len(missing) > len(keys) // 2:
        raise CheckpointError(
            f"These weights are not those of {described}: {len(missing)} of its {len(keys)} "
            f"tensors are missing (e.g. {missing[0]}), and the file holds e.g. "
            f"{next(iter(tensors), 'nothing')}."
        )
    if missing:
        raise CheckpointError(f"The weights lack {missing[0]}, which {described} has.")
    extra = sorted(set(tensors) - set(keys.values()))
    if extra:
        raise CheckpointError(
            f"The weights hold {extra[0]} {tuple(tensors[extra[0]].shape)}, which {described} "
            f"does not have."
        )
    flat = {}
    for (collection, path), key in keys.items():
        want = tuple(wanted[(collection, path)].shape)
        tensor = tensors[key]
        value = _to_flax(tensor, want, twin.flattened.get(path.rsplit("/", 1)[0]))
        if value is None or value.shape != want:
            raise CheckpointError(
                f"The weights' {key} has shape {tuple(tensor.shape)}, but {name}'s {path} needs "
                f"{_torch_shape(want)} in PyTorch's layout."
            )
        flat[(collection, path)] = value.astype(np.float32)
    return initialize.unflatten(flat)


def _torch_key(twin: Source, path: str) -> str:
    *modules, leaf = path.split("/")
    try:
        return f"{twin.module_key(tuple(modules))}.{torch_names.LEAVES[leaf]}"
    except (torch_names.UnknownModule, KeyError):
        raise ConfigError(
            f"The {twin.library} {twin.name} mapping has no key for {path}; the model no longer "
            "has the structure its mapping was written for."
        ) from None


def _to_flax(
    tensor: np.ndarray, want: tuple[int, ...], flattened: tuple[int, int] | None
) -> np.ndarray | None:
    """A PyTorch tensor in our layout (None where its rank cannot be ours)."""
    if tensor.ndim != len(want):
        return None
    if tensor.ndim == 4:  # OIHW -> HWIO
        return tensor.transpose(2, 3, 1, 0)
    if tensor.ndim == 2:  # (out, in) -> (in, out)
        if flattened is not None:
            height, width = flattened
            out, features = tensor.shape
            if features % (height * width):
                return None
            channels = features // (height * width)
            tensor = tensor.reshape(out, channels, height, width).transpose(0, 2, 3, 1)
            tensor = tensor.reshape(out, features)
        return tensor.T
    return tensor


def _torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Our shape written in PyTorch's layout, for error messages."""
    if len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    if len(shape) == 2:
        return (shape[1], shape[0])
    return shape
