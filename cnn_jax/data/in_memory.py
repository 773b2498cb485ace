"""Data sets held in accelerator memory and batched inside the compiled step.

The training split is one uint8 array whose rows are spread over the devices. A step draws
its batch from an epoch-wise random permutation keyed by (seed, epoch), so the batch of step
t is a pure function of the seed and t: a resumed run sees exactly the batches an
uninterrupted one would, on any number of devices.

The permutation is evaluated only at the batch's positions (`shuffled_positions`), a few
integer operations each, rather than built for the whole set in every step:
`jax.random.permutation` of CIFAR's 50,000 examples is a sort that costs 10-20 ms on a 2-core
CPU, a tenth of a ResNet-20 step.
"""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from cnn_jax.data.datasets import Split
from cnn_jax import sharding


@flax.struct.dataclass
class TrainSplit:
    images: jax.Array  # uint8 (rows, H, W, C); rows >= size, padded to divide over the devices
    labels: jax.Array  # int32 (rows,)
    size: int = flax.struct.field(pytree_node=False)  # real examples

    def batch(
        self, key: jax.Array, step: jax.Array, batch_size: int
    ) -> tuple[jax.Array, jax.Array]:
        """The `batch_size` examples of `step`: epoch = step // (size // batch_size)."""
        epoch, position = jnp.divmod(step, self.size // batch_size)
        positions = position * batch_size + jnp.arange(batch_size)
        rows = shuffled_positions(jax.random.fold_in(key, epoch), positions, self.size)
        return self.images[rows], self.labels[rows]


FEISTEL_ROUNDS = 4


def shuffled_positions(key: jax.Array, positions: jax.Array, size: int) -> jax.Array:
    """Where `positions` (ints in [0, size)) go under a random permutation of range(size).

    The permutation is a keyed Feistel network (Luby & Rackoff 1988: four rounds of random
    functions give a pseudorandom permutation) on the smallest even number of bits that covers
    `size`, restricted to range(size) by cycle walking: an index that lands outside is mapped
    again until it lands inside, which keeps the map one-to-one. It costs a few integer
    operations per position, whatever `size` is.
    """
    half_bits = max(1, (int(size - 1).bit_length() + 1) // 2)
    mask = jnp.uint32((1 << half_bits) - 1)
    round_keys = jax.random.bits(key, (FEISTEL_ROUNDS,), jnp.uint32)

    def feistel(x):
        left, right = x >> half_bits, x & mask
        for round_key in round_keys:
            left, right = right, left ^ (_mix(right ^ round_key) & mask)
        return (left << half_bits) | right

    def walk(x):
        return jnp.where(x >= size, feistel(x), x)

    x = feistel(positions.astype(jnp.uint32))
    return jax.lax.while_loop(lambda x: jnp.any(x >= size), walk, x).astype(jnp.int32)


def _mix(x: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finalizer: every input bit flips each output bit with probability
    ~1/2."""
    x = (x ^ (x >> 16)) * jnp.uint32(0x85EBCA6B)
    x = (x ^ (x >> 13)) * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


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
