"""On-device preprocessing for the in-memory data sets (He et al. 2015, section 4.2).

"We follow the simple data augmentation in [24] for training: 4 pixels are padded on each
side, and a 32x32 crop is randomly sampled from the padded image or its horizontal flip.
For testing, we only evaluate the single view of the original 32x32 image." The per-pixel
mean of the training set is subtracted first, so the zero padding is the mean image's colour.
All functions are pure jnp and run inside the compiled train and eval steps.
"""

import jax
import jax.numpy as jnp
import numpy as np


def pixel_mean(images: np.ndarray) -> np.ndarray:
    """The per-pixel mean (H, W, C) of uint8 training images, scaled to [0, 1]."""
    return (images.mean(axis=0, dtype=np.float64) / 255.0).astype(np.float32)


def normalize(images: jnp.ndarray, mean: jnp.ndarray) -> jnp.ndarray:
    """uint8 images -> float32 in [0, 1] minus the per-pixel mean."""
    return images.astype(jnp.float32) / 255.0 - mean


def random_crop(key: jax.Array, images: jnp.ndarray, padding: int) -> jnp.ndarray:
    """Zero-pads every side by `padding` and takes one random same-size crop per image."""
    if padding == 0:
        return images
    batch, height, width, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (batch, 2), 0, 2 * padding + 1)
    crop = lambda image, offset: jax.lax.dynamic_slice(
        image, (offset[0], offset[1], 0), (height, width, image.shape[-1])
    )
    return jax.vmap(crop)(padded, offsets)


def random_flip(key: jax.Array, images: jnp.ndarray) -> jnp.ndarray:
    """Mirrors each image left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
    return jnp.where(flip, images[:, :, ::-1, :], images)


def train_view(
    key: jax.Array, images: jnp.ndarray, mean: jnp.ndarray, padding: int = 4, flip: bool = True
) -> jnp.ndarray:
    """The training input: normalized, randomly cropped and (optionally) flipped."""
    crop_key, flip_key = jax.random.split(key)
    images = random_crop(crop_key, normalize(images, mean), padding)
    return random_flip(flip_key, images) if flip else images


def resize(images: jnp.ndarray, size: int) -> jnp.ndarray:
    """Bilinear resize of a batch to size x size (`augment.resize`; 0 keeps the size), e.g. to
    give CIFAR images to a net pretrained on larger ImageNet images."""
    if not size or images.shape[1:3] == (size, size):
        return images
    return jax.image.resize(images, (images.shape[0], size, size, images.shape[3]), "bilinear")
