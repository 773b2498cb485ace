"""Readers for the data sets' standard distribution files, for machines without a network.

CIFAR-10/100: `cifar-10-python.tar.gz` / `cifar-100-python.tar.gz` as downloaded from
https://www.cs.toronto.edu/~kriz/cifar.html, or the folders they extract to.
MNIST / Fashion-MNIST: the four IDX files (`train-images-idx3-ubyte.gz`, ...), gzipped or not.
"""

import gzip
import pathlib
import pickle
import tarfile

import numpy as np

from cnn_jax.errors import DataError

Arrays = tuple[np.ndarray, np.ndarray]  # uint8 images (N, H, W, C), int32 labels (N,)

_CIFAR = {
    # name: (archive, folder inside it, {split: member files}, label key)
    "cifar10": (
        "cifar-10-python.tar.gz",
        "cifar-10-batches-py",
        {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
        b"labels",
    ),
    "cifar100": (
        "cifar-100-python.tar.gz",
        "cifar-100-python",
        {"train": ["train"], "test": ["test"]},
        b"fine_labels",
    ),
}
_IDX_PREFIX = {"train": "train", "test": "t10k"}
DOWNLOAD_PAGES = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar.html",
    "mnist": "https://yann.lecun.org/exdb/mnist/",
    "fashion_mnist": "https://github.com/zalandoresearch/fashion-mnist "
    "(or Debian's package dataset-fashion-mnist)",
}


def read(name: str, split: str, data_dir: str) -> Arrays:
    """Reads split `train` or `test` of data set `name` from the files in `data_dir`."""
    directory = pathlib.Path(data_dir).expanduser()
    if name in _CIFAR:
        return _read_cifar(name, split, directory)
    return _read_idx(name, split, directory)


def _read_cifar(name: str, split: str, directory: pathlib.Path) -> Arrays:
    archive, folder, members, label_key = _CIFAR[name]
    batches = []
    if (directory / archive).is_file():
        with tarfile.open(directory / archive, "r:gz") as tar:
            for member in members[split]:
                batches.append(pickle.load(tar.extractfile(f"{folder}/{member}"), encoding="bytes"))
    else:
        extracted = next((d for d in (directory / folder, directory) if (d / members[split][0]).is_file()), None)
        if extracted is None:
            raise DataError(
                f"No {name} files in {directory}: expected {archive} or its folder {folder}/ "
                f"(download them from {DOWNLOAD_PAGES[name]})."
            )
        for member in members[split]:
            with open(extracted / member, "rb") as f:
                batches.append(pickle.load(f, encoding="bytes"))
    images = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([b[label_key] for b in batches]).astype(np.int32)
    return images.transpose(0, 2, 3, 1), labels


def _read_idx(name: str, split: str, directory: pathlib.Path) -> Arrays:
    prefix = _IDX_PREFIX[split]
    images = _read_idx_file(directory, f"{prefix}-images-idx3-ubyte", name)
    labels = _read_idx_file(directory, f"{prefix}-labels-idx1-ubyte", name)
    return images[..., None], labels.astype(np.int32)


def _read_idx_file(directory: pathlib.Path, stem: str, name: str) -> np.ndarray:
    """An IDX file (LeCun's format): magic, dimension sizes, then unsigned bytes."""
    for path, opener in ((directory / f"{stem}.gz", gzip.open), (directory / stem, open)):
        if path.is_file():
            with opener(path, "rb") as f:
                data = f.read()
            break
    else:
        raise DataError(
            f"No {name} files in {directory}: expected {stem}.gz "
            f"(download the four IDX files from {DOWNLOAD_PAGES[name]})."
        )
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
