"""Readers for the data sets' standard distribution files, for machines without a network.

CIFAR-10/100, from https://www.cs.toronto.edu/~kriz/cifar.html: the binary distribution
(`cifar-10-binary.tar.gz` / `cifar-100-binary.tar.gz`, the one tfds reads) or the python one
(`cifar-10-python.tar.gz` / `cifar-100-python.tar.gz`), or the folders they extract to. The
python files are pickles; they are read by an unpickler that builds only the arrays, lists,
dicts and bytes the format holds, so a crafted file cannot run code.
MNIST / Fashion-MNIST: the four IDX files (`train-images-idx3-ubyte.gz`, ...), gzipped or not.
"""

import dataclasses
import gzip
import io
import pathlib
import pickle
import tarfile
from typing import Callable

import numpy as np

from cnn_jax.errors import DataError

Arrays = tuple[np.ndarray, np.ndarray]  # uint8 images (N, H, W, C), int32 labels (N,)


@dataclasses.dataclass(frozen=True)
class _Distribution:
    """One way CIFAR is distributed: an archive, the folder inside it, its files per split,
    and how one file's bytes become (images in NCHW order, labels)."""

    archive: str
    folder: str
    members: dict[str, list[str]]
    parse: Callable[[bytes, str], tuple[np.ndarray, np.ndarray]]


def _binary_records(label_bytes: int) -> Callable[[bytes, str], tuple[np.ndarray, np.ndarray]]:
    """Records of `label_bytes` label bytes (CIFAR-100: coarse, fine) and 3072 pixel bytes."""

    def parse(data: bytes, name: str):
        size = label_bytes + 3 * 32 * 32
        if len(data) % size:
            raise DataError(
                f"{name} is not a CIFAR binary file: its size is not a multiple of {size} bytes."
            )
        records = np.frombuffer(data, np.uint8).reshape(-1, size)
        return records[:, label_bytes:].reshape(-1, 3, 32, 32), records[:, label_bytes - 1]

    return parse


def _python_batch(label_key: bytes) -> Callable[[bytes, str], tuple[np.ndarray, np.ndarray]]:
    """A pickled dict with the pixel rows under b"data" and a list of labels."""

    def parse(data: bytes, name: str):
        try:
            batch = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
            images, labels = np.asarray(batch[b"data"]), np.asarray(batch[label_key])
        except pickle.UnpicklingError as e:
            raise DataError(f"{name} is not a CIFAR python batch file: {e}") from None
        except Exception as e:  # truncated or foreign pickles raise many types
            raise DataError(
                f"{name} is not a CIFAR python batch file ({type(e).__name__}: {e})."
            ) from None
        if images.dtype != np.uint8 or images.size != len(labels) * 3 * 32 * 32:
            raise DataError(
                f"{name} is not a CIFAR python batch file: its b'data' is not 3072 bytes per label."
            )
        return images.reshape(-1, 3, 32, 32), labels

    return parse


class _CifarUnpickler(pickle.Unpickler):
    """Builds only what CIFAR's python batch files hold: dicts, lists, bytes, numbers and
    numpy arrays (by numpy's own reconstructors, which run no code from the file)."""

    ALLOWED = {
        ("_codecs", "encode"),  # bytes, as Python 3 writes them in pickle protocol 2
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"it asks to load {module}.{name}, which a CIFAR batch does not hold and this "
                "reader does not run."
            )
        return super().find_class(module, name)


_CIFAR = {
    "cifar10": (
        _Distribution(
            "cifar-10-binary.tar.gz", "cifar-10-batches-bin",
            {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]},
            _binary_records(label_bytes=1),
        ),
        _Distribution(
            "cifar-10-python.tar.gz", "cifar-10-batches-py",
            {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
            _python_batch(b"labels"),
        ),
    ),
    "cifar100": (
        _Distribution(
            "cifar-100-binary.tar.gz", "cifar-100-binary",
            {"train": ["train.bin"], "test": ["test.bin"]},
            _binary_records(label_bytes=2),  # coarse label, then the fine one
        ),
        _Distribution(
            "cifar-100-python.tar.gz", "cifar-100-python",
            {"train": ["train"], "test": ["test"]},
            _python_batch(b"fine_labels"),
        ),
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
    """The first distribution found in `directory`: an archive, or the folder it extracts to."""
    for dist in _CIFAR[name]:
        members = dist.members[split]
        if (directory / dist.archive).is_file():
            with tarfile.open(directory / dist.archive, "r:gz") as tar:
                parts = [dist.parse(_member(tar, f"{dist.folder}/{m}", directory / dist.archive), m)
                         for m in members]
            break
        folder = next(
            (d for d in (directory / dist.folder, directory) if (d / members[0]).is_file()), None
        )
        if folder is not None:
            parts = [dist.parse((folder / m).read_bytes(), str(folder / m)) for m in members]
            break
    else:
        archives = " or ".join(d.archive for d in _CIFAR[name])
        raise DataError(
            f"No {name} files in {directory}: expected {archives}, or the folder one extracts to "
            f"(download them from {DOWNLOAD_PAGES[name]})."
        )
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts]).astype(np.int32)
    return images.transpose(0, 2, 3, 1), labels


def _member(tar: tarfile.TarFile, name: str, archive: pathlib.Path) -> bytes:
    try:
        return tar.extractfile(name).read()
    except (KeyError, AttributeError):
        raise DataError(
            f"{archive} has no file {name}; is it the archive from {DOWNLOAD_PAGES['cifar10']}?"
        ) from None


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
