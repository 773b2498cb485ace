"""Data sets held in accelerator memory and batched inside the compiled step.

The training split is one uint8 array whose rows are spread over the devices. A step draws
its batch from an epoch-wise random permutation keyed by (seed, epoch), so the batch of step
t is a pure function of the seed and t: a resumed run sees exactly the batches an
uninterrupted one would, on any number of devices.
"""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from cnn_jax.data.datasets import Split
from cnn_jax.training import sharding


@flax.struct.dataclass
class TrainSplit:
    images: jax.Array  # uint8 (rows, H, W, C); rows >= size, padded to divide over the devices
    labels: jax.Array  # int32 (rows,)
    size: int = flax.struct.field(pytree_node=False)  # real examples

    def batch(self, key: jax.Array, step: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
        """The `batch_size` examples of `step`: epoch = step // (size // batch_size)."""
        epoch, position = jnp.divmod(step, self.size // batch_size)
        order = jax.random.permutation(jax.random.fold_in(key, epoch), self.size)
        rows = jax.lax.dynamic_slice_in_dim(order, position * batch_size, batch_size)
        return self.images[rows], self.labels[rows]


@flax.struct.dataclass
class EvalSplit:
    images: jax.Array  # uint8 (num_batches, batch, H, W, C), sharded along `batch`
    labels: jax.Array  # int32 (num_batches, batch)
    mask: jax.Array  # bool (num_batches, batch); False marks padding in the last batch
    size: int = flax.struct.field(pytree_node=False)  # real examples


def put_train(split: Split, mesh: Mesh) -> TrainSplit:
    """Copies a training split to the devices, rows spread over the `data` axis."""
    rows = -(-len(split) // mesh.size) * mesh.size
    images, labels = _pad_rows(split.images, rows), _pad_rows(split.labels, rows)
    return TrainSplit(
        images=sharding.global_array(images, sharding.sharded(mesh)),
        labels=sharding.global_array(labels, sharding.sharded(mesh)),
        size=len(split),
    )


def put_eval(split: Split, batch_size: int, mesh: Mesh) -> EvalSplit:
    """Copies an evaluation split to the devices as padded batches split over the `data` axis."""
    sharding.check_divisible("eval.batch_size", batch_size, mesh)
    num_batches = -(-len(split) // batch_size)
    rows = num_batches * batch_size
    mask = _pad_rows(np.ones(len(split), bool), rows)

    def batched(array: np.ndarray) -> jax.Array:
        array = _pad_rows(array, rows).reshape(num_batches, batch_size, *array.shape[1:])
        return sharding.global_array(array, sharding.sharded(mesh, axis=1))

    return EvalSplit(batched(split.images), batched(split.labels), batched(mask), len(split))


def _pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    return np.pad(array, [(0, rows - len(array))] + [(0, 0)] * (array.ndim - 1))
