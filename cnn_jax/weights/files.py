"""PyTorch state dicts from files, as {key: numpy array}.

`.safetensors` files are read with the `safetensors` package and numpy alone. `.pth` / `.pt`
files need torch and are read with `torch.load(weights_only=True)`, which restores tensors and
plain containers and refuses to run any other pickled object.
"""

import pathlib

import numpy as np

from cnn_jax.errors import CheckpointError

SAFETENSORS = (".safetensors",)
PICKLES = (".pth", ".pt", ".bin")
WRAPPERS = ("state_dict", "model", "state_dict_ema")  # keys training scripts nest the dict under


def read_state_dict(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """The tensors of a `.safetensors` or `.pth`/`.pt` file, by key, as float32/int numpy."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"Weights file {path} does not exist.")
    if path.suffix in SAFETENSORS:
        tensors = _read_safetensors(path)
    elif path.suffix in PICKLES:
        tensors = _read_pickle(path)
    else:
        raise CheckpointError(
            f"Weights file {path} is neither .safetensors nor .pth/.pt; those are what "
            "torchvision and timm save."
        )
    return {key: np.asarray(value) for key, value in tensors.items()}


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise CheckpointError(
            f"Reading {path} needs the safetensors package: pip install safetensors."
        ) from None
    try:
        return load_file(str(path))
    except Exception as e:  # SafetensorError and friends for truncated or foreign files
        raise CheckpointError(
            f"Weights file {path} is not a readable safetensors file: {e}"
        ) from None


def _read_pickle(path: pathlib.Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"Reading {path} needs PyTorch (pip install torch); or save the state dict as "
            ".safetensors, which needs only the safetensors package."
        ) from None
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for objects other than tensors, corrupt zips, ...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"Weights file {path} is not a state dict that loads safely (weights_only): "
            f"{reason[:300]}"
        ) from None
    for key in WRAPPERS:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not all(torch.is_tensor(v) for v in loaded.values()):
        raise CheckpointError(f"Weights file {path} does not hold a state dict of tensors.")
    return {key: value.detach().float().numpy() if value.is_floating_point() else value.numpy()
            for key, value in loaded.items()}
