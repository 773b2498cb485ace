"""Evaluating a trained run again from its checkpoint."""

import jax
from etils import epath

from cnn_jax import sharding
from cnn_jax.training import checkpoint, optim, pipelines, state as state_lib, steps


def evaluate_workdir(
    workdir: epath.PathLike, step: int | None = None
) -> tuple[int, dict[str, dict[str, float]]]:
    """Restores a workdir's checkpoint at `step` (default: the latest) onto the devices present
    and evaluates it on the splits its training evaluated; returns (step, {split: metrics})."""
    model, state, config = checkpoint.restore_state(workdir, step)
    pipeline = pipelines.create(config, model, optim.direction(config), sharding.make_mesh())
    sums = jax.device_get(pipeline.evaluate(state_lib.stack([state])))
    return int(state.step), {
        split: steps.summarize({k: v[0] for k, v in s.items()}) for split, s in sums.items()
    }
