"""Batches drawn on the device: a pure function of (seed, step), on any number of devices."""

import jax
import numpy as np

from cnn_jax.data import in_memory
from cnn_jax.data.datasets import Split
from cnn_jax.training import sharding


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


def test_images_follow_their_labels():
    data = in_memory.put_train(numbered_split(50), sharding.make_mesh())
    images, labels = data.batch(jax.random.key(3), 4, 10)
    np.testing.assert_array_equal(np.asarray(images)[:, 0, 0, 0], np.asarray(labels) % 256)


def test_eval_split_pads_the_last_batch_and_masks_it():
    split = in_memory.put_eval(numbered_split(45), batch_size=20, mesh=sharding.make_mesh())
    assert split.images.shape == (3, 20, 32, 32, 1) and split.size == 45
    assert int(split.mask.sum()) == 45 and not bool(split.mask[2, 5:].any())
    np.testing.assert_array_equal(np.asarray(split.labels)[split.mask], np.arange(45))
