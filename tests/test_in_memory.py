"""Batches drawn on the device: a pure function of (seed, step), on any number of devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.data import in_memory
from cnn_jax.data.datasets import Split
from cnn_jax import sharding


def numbered_split(n: int) -> Split:
    images = np.zeros((n, 32, 32, 1), np.uint8)
    images[:, 0, 0, 0] = np.arange(n) % 256
    return Split(images, np.arange(n, dtype=np.int32))


def test_each_epoch_visits_every_example_once():
    data = in_memory.put_train(numbered_split(100), sharding.make_mesh())
    key = jax.random.key(0)
    batch = jax.jit(data.batch, static_argnums=2)
    epoch0 = np.concatenate([np.asarray(batch(key, step, 20)[1]) for step in range(5)])
    epoch1 = np.concatenate([np.asarray(batch(key, step, 20)[1]) for step in range(5, 10)])
    assert sorted(epoch0) == list(range(100)) and sorted(epoch1) == list(range(100))
    assert not np.array_equal(epoch0, epoch1)
    np.testing.assert_array_equal(batch(key, 7, 20)[1], batch(key, 7, 20)[1])


@pytest.mark.parametrize("size", [1, 2, 10, 37, 256, 50_000])
def test_shuffled_positions_are_a_permutation(size):
    positions = in_memory.shuffled_positions(jax.random.key(1), jnp.arange(size), size)
    assert positions.dtype == jnp.int32
    assert sorted(np.asarray(positions)) == list(range(size))


def test_shuffled_positions_look_like_a_random_permutation():
    """A uniform random permutation of n moves an element n/3 on average, has about one
    fixed point, and keeps no order between neighbours; another key gives another one."""
    size = 50_000
    first = np.asarray(in_memory.shuffled_positions(jax.random.key(1), jnp.arange(size), size))
    second = np.asarray(in_memory.shuffled_positions(jax.random.key(2), jnp.arange(size), size))
    assert abs(np.abs(first - np.arange(size)).mean() / size - 1 / 3) < 0.01
    assert (first == np.arange(size)).sum() < 10
    assert abs(np.corrcoef(first[:-1], first[1:])[0, 1]) < 0.02
    assert (first == second).mean() < 0.01


def test_a_batch_is_its_slice_of_the_epoch_permutation():
    data = in_memory.put_train(numbered_split(100), sharding.make_mesh())
    key = jax.random.key(5)
    order = in_memory.shuffled_positions(jax.random.fold_in(key, 1), jnp.arange(100), 100)
    _, labels = data.batch(key, 5 + 2, 20)  # epoch 1, third batch
    np.testing.assert_array_equal(labels, order[40:60])


def test_images_follow_their_labels():
    data = in_memory.put_train(numbered_split(50), sharding.make_mesh())
    images, labels = data.batch(jax.random.key(3), 4, 10)
    np.testing.assert_array_equal(np.asarray(images)[:, 0, 0, 0], np.asarray(labels) % 256)


def test_eval_split_pads_the_last_batch_and_masks_it():
    split = in_memory.put_eval(numbered_split(45), batch_size=20, mesh=sharding.make_mesh())
    assert split.images.shape == (3, 20, 32, 32, 1) and split.size == 45
    assert int(split.mask.sum()) == 45 and not bool(split.mask[2, 5:].any())
    np.testing.assert_array_equal(np.asarray(split.labels)[split.mask], np.arange(45))
