"""Reading the data sets from their distribution files and from tfds, into host memory."""

import io
import os
import pickle
import socket
import sys
import tarfile

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnn_jax.data import datasets, files
from cnn_jax.errors import ConfigError, DataError
from tests.conftest import write_idx


def dataset_config(**values) -> ml_collections.ConfigDict:
    defaults = dict(name="cifar10", source="files", data_dir="", download=False, val_split=0)
    return ml_collections.ConfigDict(defaults | values)


def cifar_batch(images: np.ndarray, labels: np.ndarray, label_key: bytes, protocol=None) -> bytes:
    """A batch file in the CIFAR python format: rows of 1024 R, 1024 G, 1024 B bytes."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return pickle.dumps({b"data": data, label_key: labels.tolist()}, protocol=protocol)


def cifar_records(images: np.ndarray, *label_columns: np.ndarray) -> bytes:
    """A file in the CIFAR binary format: per image its label byte(s), then 3072 pixel bytes."""
    pixels = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([np.stack(label_columns, 1).astype(np.uint8), pixels], axis=1).tobytes()


def add_to_tar(tar: tarfile.TarFile, name: str, blob: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(blob)
    tar.addfile(info, io.BytesIO(blob))


def write_cifar10_archive(directory, per_batch=4):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6 * per_batch, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 6 * per_batch)
    with tarfile.open(directory / "cifar-10-python.tar.gz", "w:gz") as tar:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for i, name in enumerate(names):
            rows = slice(i * per_batch, (i + 1) * per_batch)
            add_to_tar(
                tar,
                f"cifar-10-batches-py/{name}",
                cifar_batch(images[rows], labels[rows], b"labels"),
            )
    return images, labels


def test_cifar10_archive_is_read_in_nhwc_order(tmp_path):
    images, labels = write_cifar10_archive(tmp_path)
    train_images, train_labels = files.read("cifar10", "train", str(tmp_path))
    test_images, test_labels = files.read("cifar10", "test", str(tmp_path))
    np.testing.assert_array_equal(train_images, images[:20])
    np.testing.assert_array_equal(train_labels, labels[:20])
    np.testing.assert_array_equal(test_images, images[20:])
    assert test_labels.dtype == np.int32


def test_extracted_cifar100_folder(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
        (folder / split).write_bytes(cifar_batch(images, np.arange(5) * 20, b"fine_labels"))
    images, labels = files.read("cifar100", "test", str(tmp_path))
    assert images.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(labels, [0, 20, 40, 60, 80])


def test_cifar10_binary_archive_reads_as_the_python_one(tmp_path):
    for folder in ("python", "binary"):
        (tmp_path / folder).mkdir()
    images, labels = write_cifar10_archive(tmp_path / "python")
    with tarfile.open(tmp_path / "binary" / "cifar-10-binary.tar.gz", "w:gz") as tar:
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
        for i, name in enumerate(names):
            add_to_tar(
                tar,
                f"cifar-10-batches-bin/{name}",
                cifar_records(images[4 * i : 4 * i + 4], labels[4 * i : 4 * i + 4]),
            )
    for split in ("train", "test"):
        binary = files.read("cifar10", split, str(tmp_path / "binary"))
        python = files.read("cifar10", split, str(tmp_path / "python"))
        np.testing.assert_array_equal(binary[0], python[0])
        np.testing.assert_array_equal(binary[1], python[1])
        assert binary[1].dtype == np.int32


def test_extracted_cifar100_binary_folder_gives_the_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    images = np.random.default_rng(3).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    for split in ("train", "test"):
        (folder / f"{split}.bin").write_bytes(
            cifar_records(images, np.arange(5), np.arange(5) * 20)
        )
    read_images, labels = files.read("cifar100", "train", str(tmp_path))
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(labels, [0, 20, 40, 60, 80])


def test_python_2_pickles_as_distributed_are_read(tmp_path):
    """The original files: pickle protocol 2, numpy.core's array constructor, bytes keys."""
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    images = np.random.default_rng(4).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    blob = cifar_batch(images, np.array([7, 8, 9]), b"fine_labels", protocol=2)
    (folder / "test").write_bytes(blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    read_images, labels = files.read("cifar100", "test", str(tmp_path))
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(labels, [7, 8, 9])


class RunsACommand:
    """What a crafted pickle can hold: a call, made by pickle.load, of any importable function."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_crafted_cifar_pickle_runs_nothing_and_is_one_error(tmp_path):
    marker = tmp_path / "ran"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    crafted = {b"data": RunsACommand(f"touch {marker}"), b"labels": [0]}
    (folder / "data_batch_1").write_bytes(pickle.dumps(crafted, protocol=2))
    with pytest.raises(DataError) as error:
        files.read("cifar10", "train", str(tmp_path))
    assert str(error.value) == (
        f"{folder / 'data_batch_1'} is not a CIFAR python batch file: "
        "it asks to load posix.system, which a CIFAR batch does not hold "
        "and this reader does not run."
    )
    assert not marker.exists()


def test_idx_files_are_padded_to_32x32_and_split(tmp_path):
    rng = np.random.default_rng(2)
    train = rng.integers(1, 256, (50, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(50) % 10)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", train[:10])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(10))
    splits = datasets.load(dataset_config(name="mnist", data_dir=str(tmp_path), val_split=8))
    assert len(splits["train"]) == 42 and len(splits["val"]) == 8 and len(splits["test"]) == 10
    image = splits["train"].images[0]
    assert image.shape == (32, 32, 1)
    np.testing.assert_array_equal(image[2:30, 2:30, 0], train[0])
    assert image[:2].max() == 0 and image[:, 30:].max() == 0
    np.testing.assert_array_equal(splits["val"].labels, np.arange(42, 50) % 10)


def test_fashion_mnist_from_debian_files(fashion_mnist_dir):
    splits = datasets.load(
        dataset_config(name="fashion_mnist", data_dir=str(fashion_mnist_dir), val_split=5000)
    )
    assert splits["train"].images.shape == (55_000, 32, 32, 1)
    assert splits["val"].images.shape == (5_000, 32, 32, 1)
    assert splits["test"].images.shape == (10_000, 32, 32, 1)
    assert np.bincount(splits["test"].labels).tolist() == [1000] * 10


def test_missing_files_name_the_folder_and_where_to_get_them(tmp_path):
    with pytest.raises(
        DataError, match=f"No cifar10 files in {tmp_path}.*cifar-10-python.tar.gz.*toronto"
    ):
        datasets.load(dataset_config(data_dir=str(tmp_path)))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        datasets.load(dataset_config(name="fashion_mnist", data_dir=str(tmp_path)))


def test_bad_dataset_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="known: cifar10"):
        datasets.load(dataset_config(name="svhn"))
    with pytest.raises(ConfigError, match="needs dataset.data_dir"):
        datasets.load(dataset_config(data_dir=""))
    with pytest.raises(ConfigError, match="source"):
        datasets.load(dataset_config(source="ftp", data_dir="x"))


def test_tfds_source_with_mock_data():
    with tfds.testing.mock_data(num_examples=40):
        splits = datasets.load(dataset_config(source="tfds", val_split=10))
    assert splits["train"].images.shape == (30, 32, 32, 3)
    assert splits["val"].images.dtype == np.uint8
    assert splits["test"].labels.max() < 10


def test_tfds_offline_download_fails_in_seconds_with_advice(tmp_path, monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(DataError, match="cannot be downloaded .*source=files"):
        datasets.load(dataset_config(source="tfds", data_dir=str(tmp_path), download=True))


def test_tfds_without_download_says_how_to_prepare(tmp_path):
    with pytest.raises(DataError, match="not prepared .*tfds build cifar10"):
        datasets.load(dataset_config(source="tfds", data_dir=str(tmp_path), download=False))


def test_tfds_without_tensorflow_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` fails
    with pytest.raises(
        DataError, match="needs TensorFlow.*pip install tensorflow-cpu.*source=files"
    ):
        datasets.load(dataset_config(source="tfds"))
