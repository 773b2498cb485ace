"""The data sets a run can name, and what a model sees of them.

In-memory sets (`datasets`: CIFAR-10/100, MNIST, Fashion-MNIST) live on the devices; streamed
ones (`imagenet`: ImageNet, Imagenette) are decoded on the host by tf.data, which is imported
only where a streamed set is used.
"""

import ml_collections

from cnn_jax.data import datasets


def is_streaming(dataset_name: str) -> bool:
    from cnn_jax.data import imagenet

    return dataset_name in imagenet.NUM_CLASSES


def num_classes(dataset: str | ml_collections.ConfigDict) -> int:
    """Outputs of the model for a data set's name, or for a `dataset` section (which may keep
    only some of the classes: `dataset.classes`)."""
    name = dataset if isinstance(dataset, str) else dataset.name
    if is_streaming(name):
        from cnn_jax.data import imagenet

        return imagenet.NUM_CLASSES[name]
    if isinstance(dataset, str):
        return datasets.num_classes(name)
    return len(datasets.selected_classes(dataset))


def input_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    """(height, width, channels) of the model's inputs."""
    if is_streaming(config.dataset.name):
        return (config.augment.image_size, config.augment.image_size, 3)
    height, width, channels = datasets.image_shape(config.dataset.name)
    size = config.augment.get("resize", 0)  # in-memory images resized on the device
    return (size, size, channels) if size else (height, width, channels)


def mean_shape(config: ml_collections.ConfigDict) -> tuple[int, ...]:
    """Shape of the train state's `pixel_mean`: a per-pixel image for in-memory sets; for
    streamed sets the host normalizes, and the mean is a zero per channel."""
    if is_streaming(config.dataset.name):
        return (1, 1, 3)
    return datasets.image_shape(config.dataset.name)
