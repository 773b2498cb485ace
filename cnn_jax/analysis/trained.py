"""A trained CIFAR net restored for analysis, and evaluation batched over variants of it.

Every variant of the net (a lesion, a point of the loss landscape) is evaluated by one
compiled function over a leading axis of variants: `lax.map` runs them one after another on
the device, or vmaps `parallel` of them at once, so nothing is recompiled per variant.
"""

import dataclasses
import logging
import time
import types
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from cnn_jax import sharding
from cnn_jax.data import augment, datasets, in_memory
from cnn_jax.data.in_memory import EvalSplit
from cnn_jax.errors import CheckpointError, ConfigError
from cnn_jax.models import cifar_resnet
from cnn_jax.training import checkpoint, steps

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainedNet:
    """A restored run: the unrolled net, its variables, input mean and config."""

    model: cifar_resnet.CifarResNet
    variables: dict[str, Any]  # params and batch_stats, unrolled (stage<s>_block<i>)
    pixel_mean: jax.Array
    config: ml_collections.ConfigDict
    step: int

    @property
    def blocks(self) -> list[str]:
        """The blocks' names in network order, as `keep` indexes them."""
        n = cifar_resnet.blocks_per_stage(self.model.depth)
        return [
            f"stage{s}_block{i}"
            for s in range(1, len(cifar_resnet.STAGE_FILTERS) + 1)
            for i in range(1, n + 1)
        ]

    @property
    def keeps_shape(self) -> np.ndarray:
        """Which blocks' outputs have their inputs' shape: all but the first block of a
        stage that halves the map size."""
        n = cifar_resnet.blocks_per_stage(self.model.depth)
        strides = np.repeat(cifar_resnet.STAGE_STRIDES, n)
        return ~((np.arange(len(strides)) % n == 0) & (strides > 1))

    @property
    def deletable(self) -> np.ndarray:
        """Which blocks can be deleted: every residual block, plain blocks that keep the shape."""
        return np.ones(len(self.blocks), bool) if self.model.residual else self.keeps_shape


def restore(workdir: epath.PathLike, step: int | None = None) -> TrainedNet:
    """The CIFAR net (cifar_resnet* or cifar_plain*) of a training workdir at `step` (default:
    the latest checkpoint), unrolled if it was trained with `scan`."""
    workdir = epath.Path(workdir)
    config = checkpoint.read_config(workdir)
    name = config.model.name
    if not cifar_resnet.NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"{workdir} trains {name}; the lesion study and the loss landscape "
            "need a CIFAR net (cifar_resnet<depth> or cifar_plain<depth>)."
        )
    ckpt_dir = workdir / "checkpoints"
    if not ckpt_dir.is_dir() or not any(p.name.isdigit() for p in ckpt_dir.iterdir()):
        raise CheckpointError(f"{workdir} has no checkpoint; train the run first.")
    model, state, config = checkpoint.restore_state(workdir, step)
    variables = state.variables
    if model.scan:
        variables = cifar_resnet.unroll_variables(variables)
        model = model.clone(scan=False, remat=False)
    return TrainedNet(model, variables, state.pixel_mean, config, int(state.step))


def put_split(net: TrainedNet, split: str, max_examples: int, batch_size: int) -> EvalSplit:
    """The first `max_examples` (0: all) of a split of the run's data set, on the devices in
    batches of `batch_size`, unaugmented."""
    data = datasets.load(net.config.dataset)[split]
    if max_examples:
        data = data.take(slice(0, max_examples))
    return in_memory.put_eval(data, batch_size, sharding.make_mesh())


def split_sums(
    apply: Callable[..., jax.Array],
    variables: dict[str, Any],
    pixel_mean: jax.Array,
    split: EvalSplit,
) -> steps.Metrics:
    """Loss and error sums of `apply(variables, images, train=False)` over a split, with the
    training loop's evaluation code (`steps.batch_sums`)."""
    model = types.SimpleNamespace(apply=apply)
    state = types.SimpleNamespace(eval_variables=variables)

    def add_batch(sums, batch):
        images, labels, mask = batch
        images = augment.normalize(images, pixel_mean)
        return jax.tree.map(
            jnp.add, sums, steps.batch_sums(model, state, images, labels, mask)
        ), None

    zeros = steps.zero_sums() | {"top5_errors": jnp.zeros((), jnp.int32)}
    return jax.lax.scan(add_batch, zeros, (split.images, split.labels, split.mask))[0]


@dataclasses.dataclass(frozen=True)
class Evaluated:
    """Mean loss and error (%) per variant, and how long the evaluation took."""

    loss: np.ndarray
    error: np.ndarray
    compile_s: float
    seconds: float  # after compiling
    images_per_sec: float  # forward passes (variants x examples) per second


def map_variants(
    evaluate: Callable[[Any, Any], steps.Metrics],
    variants: Any,
    shared: Any,
    chunk: int,
    parallel: int,
    what: str,
) -> Evaluated:
    """`evaluate(variant, shared)` for every variant along the leading axis of `variants`: one
    compiled call per `chunk` variants (the last chunk padded), `parallel` of them vmapped at
    once; `shared` (variables, data) is an argument of the call, not a constant in it."""
    count = len(jax.tree.leaves(variants)[0])
    chunk = max(1, min(chunk, count))
    padded = -(-count // chunk) * chunk
    variants = jax.tree.map(
        lambda x: np.concatenate([x, np.repeat(x[-1:], padded - count, 0)]), variants
    )
    batches = [
        jax.tree.map(lambda x, i=i: x[i : i + chunk], variants) for i in range(0, padded, chunk)
    ]

    parallel = min(parallel, chunk)

    def run(batch, shared):
        # A vmapped lesion computes the blocks it deletes (a batched cond selects): one at a
        # time, it skips them.
        return jax.lax.map(
            lambda v: evaluate(v, shared), batch, batch_size=parallel if parallel > 1 else None
        )

    start = time.perf_counter()
    compiled = jax.jit(run).lower(batches[0], shared).compile()
    compile_s = time.perf_counter() - start
    start, outputs, images = time.perf_counter(), [], 0
    for i, batch in enumerate(batches):
        outputs.append(jax.device_get(compiled(batch, shared)))
        done = min((i + 1) * chunk, count)
        images += int(np.sum(outputs[-1]["count"]))  # the padding's forward passes too
        elapsed = time.perf_counter() - start
        log.info(
            "%s: %d/%d in %.0f s (%.0f images/s).", what, done, count, elapsed, images / elapsed
        )
    seconds = time.perf_counter() - start
    sums = {k: np.concatenate([o[k] for o in outputs])[:count] for k in ("loss", "errors", "count")}
    counts = np.maximum(sums["count"], 1)
    return Evaluated(
        sums["loss"] / counts, 100.0 * sums["errors"] / counts, compile_s, seconds, images / seconds
    )


def require_positive(**values: int) -> None:
    """A ConfigError naming the first of the command-line values that is below 1."""
    for name, value in values.items():
        if value < 1:
            raise ConfigError(f"--{name} must be at least 1, got {value}.")


def workdirs(
    workdir: str | None, sweep_dir: str | None, nets: list[str] | None = None
) -> list[epath.Path]:
    """The workdir, or every finished run (NET/seed<k>/summary.json) of a sweep directory
    whose net is in `nets` (default: all)."""
    if (workdir is None) == (sweep_dir is None):
        raise ConfigError("Give one of --workdir (a run) or --sweep_dir (every run of a sweep).")
    if workdir is not None:
        if not epath.Path(workdir).is_dir():
            raise CheckpointError(f"Workdir {workdir} does not exist.")
        return [epath.Path(workdir)]
    found = (
        sorted(epath.Path(sweep_dir).glob("*/seed*/summary.json"))
        if epath.Path(sweep_dir).is_dir()
        else []
    )
    found = [p.parent for p in found if nets is None or p.parent.parent.name in nets]
    if not found:
        raise CheckpointError(f"No finished run (NET/seed<k>/summary.json) in {sweep_dir}.")
    return found
