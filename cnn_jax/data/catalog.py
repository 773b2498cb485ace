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


def num_classes(dataset_name: str) -> int:
    if is_streaming(dataset_name):
        from cnn_jax.data import imagenet

        return imagenet.NUM_CLASSES[dataset_name]
    return datasets.num_classes(dataset_name)


def input_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    """(height, width, channels) of the model's inputs."""
    if is_streaming(config.dataset.name):
        return (config.augment.image_size, config.augment.image_size, 3)
    return datasets.image_shape(config.dataset.name)


def mean_shape(config: ml_collections.ConfigDict) -> tuple[int, ...]:
    """Shape of the train state's `pixel_mean`: a per-pixel image for in-memory sets; for
    streamed sets the host normalizes, and the mean is a zero per channel."""
    return (1, 1, 3) if is_streaming(config.dataset.name) else input_shape(config)
