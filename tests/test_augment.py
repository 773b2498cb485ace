"""The paper's CIFAR augmentation, run on the device: pad 4, random 32x32 crop, random flip."""

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.data import augment


def coordinate_images(batch: int) -> jnp.ndarray:
    """Images whose pixel (i, j) holds (i + 1, j + 1, image index): crops are easy to locate."""
    rows, cols = np.meshgrid(np.arange(32) + 1, np.arange(32) + 1, indexing="ij")
    images = (
        np.stack([rows, cols, np.zeros_like(rows)], -1)[None].repeat(batch, 0).astype(np.float32)
    )
    images[..., 2] = np.arange(batch)[:, None, None]
    return jnp.asarray(images)


def test_crop_is_a_window_of_the_zero_padded_image():
    images = coordinate_images(256)
    crops = np.asarray(augment.random_crop(jax.random.key(0), images, padding=4))
    assert crops.shape == images.shape
    offsets = set()
    for i, crop in enumerate(crops):
        padded = np.pad(np.asarray(images[i]), ((4, 4), (4, 4), (0, 0)))
        # Locate the window by the first real pixel and check every pixel matches it.
        matches = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if np.array_equal(padded[dy : dy + 32, dx : dx + 32], crop)
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 40  # offsets cover most of the 81 windows


def test_flip_mirrors_about_half_of_the_images():
    images = coordinate_images(2000)
    flipped = np.asarray(augment.random_flip(jax.random.key(1), images))
    mirrored = np.all(flipped == np.asarray(images)[:, :, ::-1], axis=(1, 2, 3))
    unchanged = np.all(flipped == np.asarray(images), axis=(1, 2, 3))
    assert np.all(mirrored ^ unchanged)
    assert 0.45 < mirrored.mean() < 0.55


def test_mean_subtraction_centres_the_training_set():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (500, 32, 32, 3), dtype=np.uint8)
    images[:, :16] //= 2  # a mean that differs per pixel
    mean = augment.pixel_mean(images)
    assert mean.shape == (32, 32, 3)
    normalized = np.asarray(augment.normalize(jnp.asarray(images), mean))
    np.testing.assert_allclose(normalized.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalized, (images - images.mean(axis=0)) / 255.0, atol=1e-5)


def test_train_view_is_a_pure_function_of_the_key():
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8))
    mean = jnp.full((32, 32, 3), 0.5)
    a = augment.train_view(jax.random.key(7), images, mean)
    b = augment.train_view(jax.random.key(7), images, mean)
    c = augment.train_view(jax.random.key(8), images, mean)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_padding_is_the_mean_colour():
    # A crop shifted fully to one side shows 4 columns of padding: zero after mean subtraction.
    images = jnp.full((64, 32, 32, 1), 200, jnp.uint8)
    mean = jnp.full((32, 32, 1), 200 / 255.0)
    view = np.asarray(augment.train_view(jax.random.key(0), images, mean))
    np.testing.assert_allclose(view, 0.0, atol=1e-6)
