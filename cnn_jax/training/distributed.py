"""Many hosts: `jax.distributed` joins the processes, then every device of every process is
on one Mesh and the code is the same as on one host.

TPU pods, SLURM and Open MPI jobs are detected; any other launcher passes the coordinator
address, the process count and this process's id (the command-line flags
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I`).
"""

import logging
import os

import jax

log = logging.getLogger(__name__)


def _cluster_size() -> int:
    """Processes announced by a TPU pod, SLURM or Open MPI launcher (1 if none)."""
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    counts = [
        len(hosts.split(",")) if hosts else 1,
        int(os.environ.get("SLURM_NTASKS", 1)),
        int(os.environ.get("OMPI_COMM_WORLD_SIZE", 1)),
    ]
    return max(counts)


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Starts `jax.distributed` when the run spans processes; does nothing for one process.

    Must run before any JAX computation.
    """
    explicit = coordinator_address is not None or (num_processes or 1) > 1
    if not explicit and _cluster_size() == 1:
        return
    # Cross-process collectives between CPU devices go through gloo (GPUs and TPUs ignore it).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    log.info(
        "Process %d of %d, %d local / %d global devices.",
        jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count(),
    )


def barrier(name: str, timeout_s: int = 3600) -> None:
    """Waits until every process has called `barrier(name)` (a no-op for one process).

    Hosts compile at different speeds (one may find its programs in the compilation cache),
    and the first collective of a step sets up gloo on CPUs with a 30 s deadline. This waits
    on the coordination service instead, up to `timeout_s`; `name` must be new each time.
    """
    import orbax.checkpoint as ocp

    ocp.multihost.get_barrier_sync_fn()(key=name, timeout_ms=timeout_s * 1000)
