"""Data parallelism with `jax.sharding`: one Mesh axis, `data`, over every device of every process.

Parameters and optimizer state are replicated; batches are split along their first axis.
Under `jax.jit` this is all the code data parallelism needs: XLA inserts the gradient
all-reduce, and BatchNorm statistics are taken over the global batch.
"""

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from cnn_jax.errors import ConfigError

DATA = "data"


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over `devices` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def sharded(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Splits dimension `axis` over the devices."""
    return NamedSharding(mesh, P(*([None] * axis), DATA))


def check_divisible(what: str, size: int, mesh: Mesh) -> None:
    """Batches are split evenly over the devices; anything else is a config error."""
    if size % mesh.size:
        raise ConfigError(
            f"{what}={size} is not divisible by the {mesh.size} devices; "
            f"use a multiple of {mesh.size}."
        )


def global_array(host_array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global jax.Array from a host array every process holds; each copies only its shards."""
    return jax.make_array_from_callback(host_array.shape, sharding, lambda index: host_array[index])
