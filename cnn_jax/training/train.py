"""train_and_evaluate: the loop every experiment runs.

It trains in calls of many steps, each ending at the next log, eval or checkpoint boundary,
so metrics and checkpoints are exact at those steps. Running it again on the same workdir
resumes from the latest checkpoint; on a finished run it returns the saved summary.
"""

import contextlib
import json
import logging
import math
import signal
import threading
import time
from typing import Any, Callable, Iterator

import jax
import ml_collections
from etils import epath

from cnn_jax import models
from cnn_jax.errors import DivergedError, Interrupted
from cnn_jax.training import checkpoint, metrics, optim, pipelines, sharding, state as state_lib, steps

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
CONFIG = "config.json"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: epath.PathLike) -> dict[str, Any]:
    """Trains `config` in `workdir` (a local path or gs://...), resuming if it holds
    checkpoints, and returns the summary."""
    workdir = epath.Path(workdir)
    ckpts = checkpoint.Checkpoints(workdir / "checkpoints", keep=config.checkpoint.keep)
    if (ckpts.latest_step() or 0) >= config.train.steps and (workdir / SUMMARY).exists():
        return json.loads((workdir / SUMMARY).read_text()) | {"already_finished": True}

    # ----- Model and optimizer: config errors surface before any data is read ---------------
    model = models.from_config(config.model, pipelines.num_classes(config.dataset.name))
    optimizer = optim.direction(config)
    mesh = sharding.make_mesh()
    sharding.check_divisible("train.batch_size", config.train.batch_size, mesh)
    sharding.check_divisible("eval.batch_size", config.eval.batch_size, mesh)

    # ----- Data and compiled steps; the train state, fresh or from the latest checkpoint ----
    pipeline = pipelines.create(config, model, optimizer, mesh)
    state = state_lib.create(model, optimizer, config, pipeline.pixel_mean, mesh, pipeline.input_shape)
    if ckpts.latest_step() is not None:
        state = ckpts.restore(state)
        log.info("Resuming %s from step %d.", workdir, int(state.step))
    _write_config(config, workdir)
    compile_s = pipeline.compile(state)
    if compile_s:
        log.info("Compiled the train step of %s in %.1f s.", config.model.name, compile_s)

    # ----- Training loop ------------------------------------------------------------------
    start_step, total_steps = int(state.step), config.train.steps
    writer = metrics.MetricWriter(workdir, resume_step=start_step)
    progress = metrics.Progress(start_step, total_steps)
    latest: dict[str, dict[str, float]] = {}
    window, window_steps, window_seconds = steps.zero_sums(), 0, 0.0
    step = start_step
    try:
        with _stop_requested_on_signal() as stop_requested:
            while step < total_steps:
                tick = time.perf_counter()
                state, sums = pipeline.train(state, _steps_to_boundary(step, config))
                sums = jax.device_get(sums)
                window_seconds += time.perf_counter() - tick
                num_steps, step = int(state.step) - step, int(state.step)
                window_steps += num_steps
                window = {k: window[k] + sums[k] for k in window}
                if not math.isfinite(float(sums["loss"])):
                    kept = ckpts.latest_step()
                    raise DivergedError(
                        f"The training loss became {float(sums['loss'])} before step {step}; "
                        + (f"the checkpoints up to step {kept} are kept in {ckpts.directory}."
                           if kept is not None else "no checkpoint had been written yet.")
                    )
                done = step == total_steps
                if done or step % config.train.log_every_steps == 0:
                    images_per_sec = window_steps * config.train.batch_size / window_seconds
                    latest["train"] = steps.summarize(window) | {
                        "lr": float(sums["lr"]),
                        "images_per_sec": images_per_sec,
                    }
                    writer.write(step, "train", **latest["train"])
                    progress.update(step, window_steps, latest["train"])
                    window, window_steps, window_seconds = steps.zero_sums(), 0, 0.0
                if done or step % config.eval.every_steps == 0:
                    for name, sums in pipeline.evaluate(state).items():
                        latest[name] = steps.summarize(jax.device_get(sums))
                        writer.write(step, name, **latest[name])
                    progress.evaluated(step, latest)
                if done or step % config.checkpoint.every_steps == 0 or stop_requested():
                    ckpts.save(state)
                if stop_requested() and not done:
                    raise Interrupted(
                        f"Stopped at step {step} with a checkpoint in {ckpts.directory}; "
                        "run the same command to resume."
                    )
    finally:
        ckpts.wait()
        progress.close()
        writer.close()

    summary = {
        "config": config.get("name", ""),
        "model": config.model.name,
        "dataset": config.dataset.name,
        "step": step,
        "params": state_lib.num_params(state.params),
        "devices": mesh.size,
        "compile_s": compile_s,
        **{f"{split}_{key}": value for split, values in latest.items() for key, value in values.items()},
    }
    if jax.process_index() == 0:
        (workdir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    ckpts.close()
    return summary


def _steps_to_boundary(step: int, config: ml_collections.ConfigDict) -> int:
    """Steps until the next log, eval or checkpoint step, or the end."""
    intervals = (config.train.log_every_steps, config.eval.every_steps, config.checkpoint.every_steps)
    return min([config.train.steps - step] + [k - step % k for k in intervals])


def _write_config(config: ml_collections.ConfigDict, workdir: epath.Path) -> None:
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / CONFIG).write_text(config.to_json_best_effort(indent=2) + "\n")


@contextlib.contextmanager
def _stop_requested_on_signal() -> Iterator[Callable[[], bool]]:
    """Turns the first Ctrl-C (or SIGTERM) into a request to checkpoint and stop at the next
    log step; a second Ctrl-C interrupts at once."""
    requested = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False  # Signals reach only the main thread.
        return

    def request_stop(signum, frame):
        requested.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(requested)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
