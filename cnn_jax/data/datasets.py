"""The small data sets that live in accelerator memory: CIFAR-10/100, MNIST, Fashion-MNIST."""

import dataclasses

import ml_collections
import numpy as np

from cnn_jax.data import files, tfds_source
from cnn_jax.errors import ConfigError

NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "mnist": 10, "fashion_mnist": 10}
CHANNELS = {"cifar10": 3, "cifar100": 3, "mnist": 1, "fashion_mnist": 1}
SOURCES = ("tfds", "files")
IMAGE_SIZE = 32  # Grayscale 28x28 sets are zero-padded to CIFAR's size.


def num_classes(name: str) -> int:
    if name not in NUM_CLASSES:
        raise ConfigError(f"Unknown dataset.name {name!r}; known: {', '.join(NUM_CLASSES)}.")
    return NUM_CLASSES[name]


def image_shape(name: str) -> tuple[int, int, int]:
    """(height, width, channels) of data set `name` as the models see it."""
    num_classes(name)
    return (IMAGE_SIZE, IMAGE_SIZE, CHANNELS[name])


@dataclasses.dataclass(frozen=True)
class Split:
    """One split in host memory: uint8 images (N, 32, 32, C) and int32 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: slice) -> "Split":
        return Split(self.images[rows], self.labels[rows])


def load(config: ml_collections.ConfigDict) -> dict[str, Split]:
    """Reads `config` (the `dataset` section) into splits `train`, `test` and, if held out, `val`.

    `val_split` > 0 holds out that many examples from the end of the training set
    (the paper's 45k/5k split for choosing the schedule). Optional fields: `classes` keeps
    only the examples of those labels in every split, renumbered 0, 1, ... in that order;
    `train_examples` > 0 keeps the first that many training examples (after the selection of
    classes and the validation split).
    """
    num_classes(config.name)
    if config.source == "files" and not config.data_dir:
        raise ConfigError("dataset.source=files needs dataset.data_dir, the folder with the files.")
    if config.source not in SOURCES:
        raise ConfigError(f"dataset.source must be one of {SOURCES}, got {config.source!r}.")

    def read(split: str) -> Split:
        if config.source == "files":
            images, labels = files.read(config.name, split, config.data_dir)
        else:
            images, labels = tfds_source.read(config.name, split, config.data_dir, config.download)
        return _select_classes(Split(_pad_to_size(images), labels), classes)

    classes = selected_classes(config)
    train, test = read("train"), read("test")
    if not 0 <= config.val_split < len(train):
        raise ConfigError(
            f"dataset.val_split must be in [0, {len(train)}), got {config.val_split}."
        )
    splits = {"train": train, "test": test}
    if config.val_split:
        cut = len(train) - config.val_split
        splits["train"], splits["val"] = train.take(slice(0, cut)), train.take(slice(cut, None))
    train_examples = config.get("train_examples", 0)
    if not 0 <= train_examples <= len(splits["train"]):
        raise ConfigError(
            f"dataset.train_examples must be in [0, {len(splits['train'])}] (0 = all), got "
            f"{train_examples}."
        )
    if train_examples:
        splits["train"] = splits["train"].take(slice(0, train_examples))
    return splits


def selected_classes(config: ml_collections.ConfigDict) -> tuple[int, ...]:
    """The labels `dataset.classes` keeps (all of the data set's when empty or absent)."""
    total = num_classes(config.name)
    classes = tuple(int(c) for c in config.get("classes", None) or range(total))
    if len(set(classes)) != len(classes) or not all(0 <= c < total for c in classes):
        raise ConfigError(
            f"dataset.classes must be distinct labels of {config.name} in [0, {total}), got "
            f"{list(classes)}."
        )
    return classes


def _select_classes(split: Split, classes: tuple[int, ...]) -> Split:
    """The examples of `classes`, relabelled by their position in `classes`."""
    if classes == tuple(range(len(classes))) and split.labels.max(initial=0) < len(classes):
        return split
    relabel = np.full(max(int(split.labels.max(initial=0)), max(classes)) + 1, -1, np.int32)
    relabel[list(classes)] = np.arange(len(classes), dtype=np.int32)
    labels = relabel[split.labels]
    keep = labels >= 0
    return Split(split.images[keep], labels[keep])


def _pad_to_size(images: np.ndarray) -> np.ndarray:
    pad = (IMAGE_SIZE - images.shape[1]) // 2
    if pad <= 0:
        return images
    return np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
