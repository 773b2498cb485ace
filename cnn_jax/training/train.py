"""train_and_evaluate: the loop every experiment runs.

It trains in calls of many steps, each ending at the next log, eval or checkpoint boundary,
so metrics and checkpoints are exact at those steps. Running it again on the same workdir
resumes from the latest intact checkpoint; on a finished run it returns the saved summary.
A workdir holds one run at a time, and only the run its config.json describes (`workdir`).
`train_replicas` trains several seeds of one net in one compiled program, each with its own
workdir, exactly as if each had been trained alone (up to float rounding).
"""

import contextlib
import dataclasses
import functools
import json
import logging
import math
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterator

import jax
import ml_collections
import numpy as np
from etils import epath

from cnn_jax import models
from cnn_jax.data import catalog
from cnn_jax.errors import ConfigError, DivergedError, Interrupted
from cnn_jax import sharding
from cnn_jax.training import checkpoint, distributed, initialize, metrics, optim, pipelines, steps
from cnn_jax.training import state as state_lib, workdir as workdir_lib

log = logging.getLogger(__name__)

SUMMARY = "summary.json"


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: epath.PathLike,
    on_metrics: metrics.MetricsCallback | None = None,
    allow_config_change: bool = False,
) -> dict[str, Any]:
    """Trains `config` in `workdir` (a local path or gs://...), resuming if it holds
    checkpoints, and returns the summary. `on_metrics(workdir, row)` sees every row written
    to metrics.jsonl or diagnostics.jsonl (process 0 only). A resume must have the config
    the run started with, except, with `allow_config_change`, in the fields that
    `workdir.SAFE_TO_CHANGE` lists (e.g. `train.steps` to extend a run)."""
    return train_replicas([config], [workdir], on_metrics, allow_config_change)[0]


@dataclasses.dataclass(eq=False)
class _Run:
    """One replica's files: its config, workdir, checkpoints and metric writer."""

    config: ml_collections.ConfigDict
    workdir: epath.Path
    ckpts: checkpoint.Checkpoints
    writer: metrics.MetricWriter | None = None
    latest: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    @property
    def finished(self) -> bool:
        done = (self.ckpts.latest_step() or 0) >= self.config.train.steps
        return done and (self.workdir / SUMMARY).exists()

    def summary(self) -> dict[str, Any]:
        return json.loads((self.workdir / SUMMARY).read_text())


def train_replicas(
    configs: list[ml_collections.ConfigDict],
    workdirs: list[epath.PathLike],
    on_metrics: metrics.MetricsCallback | None = None,
    allow_config_change: bool = False,
) -> list[dict[str, Any]]:
    """Trains configs that differ only in `seed` together, one workdir each; returns the
    summaries. A finished run is skipped; the others resume from their latest checkpoints."""
    _check_same_but_seed(configs)
    for config in configs:
        _check_values(config)
    runs = [
        _Run(
            c,
            epath.Path(w),
            checkpoint.Checkpoints(epath.Path(w) / "checkpoints", c.checkpoint.keep),
        )
        for c, w in zip(configs, workdirs)
    ]
    with contextlib.ExitStack() as locks:
        for run in runs:
            locks.enter_context(workdir_lib.lock(run.workdir))
            workdir_lib.check_config(run.config, run.workdir, allow_config_change)
            if (run.ckpts.latest_step() or 0) > run.config.train.steps:
                raise ConfigError(
                    f"train.steps={run.config.train.steps} is below step {run.ckpts.latest_step()} "
                    f"of the latest checkpoint in {run.workdir}."
                )
        todo = [run for run in runs if not run.finished]
        if todo:
            with _Signals() as signals:
                trained = dict(zip(todo, _train(todo, on_metrics, signals)))
    return [
        trained[run] if run in todo else run.summary() | {"already_finished": True} for run in runs
    ]


def _train(
    runs: list[_Run], on_metrics: metrics.MetricsCallback | None, signals: "_Signals"
) -> list[dict[str, Any]]:
    """Trains `runs` to the end; returns their summaries."""
    config = runs[0].config

    # ----- Model and optimizer: config errors surface before any data is read ---------------
    model = models.from_config(config.model, catalog.num_classes(config.dataset))
    optimizer = optim.direction(config)
    mesh = sharding.make_mesh()
    sharding.check_divisible("train.batch_size", config.train.batch_size, mesh)
    sharding.check_divisible("eval.batch_size", config.eval.batch_size, mesh)

    # ----- Data and compiled steps; each state fresh or from its latest checkpoint ---------
    pipeline = pipelines.create(config, model, optimizer, mesh, replicas=len(runs))
    states = []
    for run in runs:
        state = state_lib.create(
            model, optimizer, run.config, pipeline.pixel_mean, mesh, pipeline.input_shape
        )
        restored = run.ckpts.restore_latest(state)
        if restored is not None:  # a resume: its own checkpoint, never `init`
            state = restored
            log.info("Resuming %s from step %d.", run.workdir, int(state.step))
        else:
            state = initialize.from_checkpoint(state, run.config)
        states.append(state)
    if len({int(s.step) for s in states}) > 1:
        raise ConfigError(
            "Replicas trained together must resume from the same step; train "
            + ", ".join(str(r.workdir) for r in runs) + " one after another instead."
        )
    state = state_lib.stack(states)
    compile_s = pipeline.compile(state)
    if compile_s:
        log.info("Compiled the train step of %s in %.1f s.", config.model.name, compile_s)
    distributed.barrier(f"compiled {runs[0].workdir}")  # hosts compile at different speeds
    for run in runs:
        _write_config(run.config, run.workdir)

    # ----- Training loop ------------------------------------------------------------------
    step, total_steps = int(states[0].step), config.train.steps
    del states
    for run in runs:
        run.writer = metrics.MetricWriter(run.workdir, resume_step=step, on_write=on_metrics)
    progress = metrics.Progress(step, total_steps)
    window, window_steps, window_seconds = None, 0, 0.0
    try:
        with signals.training() as stop_requested:
            while step < total_steps:
                tick = time.perf_counter()
                state, sums = pipeline.train(state, _steps_to_boundary(step, config))
                sums = jax.device_get(sums)
                window_seconds += time.perf_counter() - tick
                num_steps, step = int(state.step[0]) - step, int(state.step[0])
                window_steps += num_steps
                window = {
                    k: sums[k] + (0 if window is None else window[k]) for k in steps.zero_sums()
                }
                _check_finite(sums, step, runs)
                done = step == total_steps
                if done or step % config.train.log_every_steps == 0:
                    images_per_sec = (
                        window_steps * config.train.batch_size * len(runs) / window_seconds
                    )
                    for i, run in enumerate(runs):
                        run.latest["train"] = steps.summarize(_replica(window, i)) | {
                            "lr": float(sums["lr"][i]),
                            "images_per_sec": images_per_sec,
                        }
                        run.writer.write(step, "train", **run.latest["train"])
                    progress.update(step, window_steps, runs[0].latest["train"])
                    window, window_steps, window_seconds = None, 0, 0.0
                every = config.train.get("diagnostics_every_steps", 0)
                if every and (done or step % every == 0):
                    values = jax.device_get(pipeline.diagnostics(state))
                    for i, run in enumerate(runs if values else []):
                        run.writer.write(
                            step, "diagnostics", **{k: float(v[i]) for k, v in values.items()}
                        )
                if done or step % config.eval.every_steps == 0:
                    for name, split_sums in pipeline.evaluate(state).items():
                        split_sums = jax.device_get(split_sums)
                        for i, run in enumerate(runs):
                            run.latest[name] = steps.summarize(_replica(split_sums, i))
                            run.writer.write(step, name, **run.latest[name])
                    progress.evaluated(step, runs[0].latest)
                if done or step % config.checkpoint.every_steps == 0 or stop_requested():
                    for run, replica in zip(runs, state_lib.unstack(state)):
                        run.ckpts.save(replica)
                if stop_requested() and not done:
                    raise Interrupted(
                        f"Stopped at step {step} with a checkpoint in {runs[0].ckpts.directory}; "
                        "run the same command to resume."
                    )
    finally:
        for run in runs:
            run.ckpts.wait()
            if run.writer:
                run.writer.close()
        progress.close()

    summaries = []
    for run, replica in zip(runs, state_lib.unstack(state)):
        summary = {
            "config": run.config.get("name", ""),
            "model": run.config.model.name,
            "dataset": run.config.dataset.name,
            "seed": run.config.seed,
            "step": step,
            "params": state_lib.num_params(replica.params),
            "devices": mesh.size,
            "replicas": len(runs),
            "compile_s": compile_s,
            **{
                f"{split}_{k}": v for split, values in run.latest.items() for k, v in values.items()
            },
        }
        if jax.process_index() == 0:
            workdir_lib.write_atomically(
                run.workdir / SUMMARY, json.dumps(summary, indent=2) + "\n"
            )
        run.ckpts.close()
        summaries.append(summary)
    return summaries


def _replica(sums: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    return {k: v[i] for k, v in sums.items()}


def _check_same_but_seed(configs: list[ml_collections.ConfigDict]) -> None:
    def without_seed(config):
        return {k: v for k, v in config.to_dict().items() if k != "seed"}

    if any(without_seed(c) != without_seed(configs[0]) for c in configs[1:]):
        raise ConfigError("Replicas trained together must have the same config but for the seed.")


def _check_values(config: ml_collections.ConfigDict) -> None:
    positive = ("train.batch_size", "train.steps", "train.log_every_steps", "eval.every_steps",
                "eval.batch_size", "checkpoint.every_steps", "checkpoint.keep")
    for field in positive:
        value = functools.reduce(getattr, field.split("."), config)
        if value < 1:
            raise ConfigError(f"{field} must be at least 1, not {value}.")
    if config.train.get("diagnostics_every_steps", 0) < 0:
        raise ConfigError("train.diagnostics_every_steps must be 0 (off) or more.")
    if not 0.0 <= state_lib.ema_decay(config) < 1.0:
        raise ConfigError(
            f"train.ema_decay must be 0 (off) or in (0, 1), not {config.train.ema_decay}."
        )


def _check_finite(sums: dict[str, np.ndarray], step: int, runs: list[_Run]) -> None:
    """Stops a run whose loss or state stopped being finite; its checkpoints, all written
    before this check failed, are finite."""
    for loss, finite, run in zip(sums["loss"], sums["finite"], runs):
        if not (math.isfinite(float(loss)) and finite):
            run.ckpts.wait()
            kept = run.ckpts.latest_step()
            what = (
                f"training loss of {run.workdir} became {float(loss)}"
                if not math.isfinite(float(loss))
                else f"parameters or optimizer state of {run.workdir} overflowed"
            )
            raise DivergedError(
                f"The {what} before step {step}; "
                + (f"the last finite checkpoint is step {kept} in {run.ckpts.directory}."
                   if kept is not None else "no checkpoint had been written yet.")
            )


def _steps_to_boundary(step: int, config: ml_collections.ConfigDict) -> int:
    """Steps until the next log, diagnostics, eval or checkpoint step, or the end."""
    intervals = [
        config.train.log_every_steps,
        config.eval.every_steps,
        config.checkpoint.every_steps,
        config.train.get("diagnostics_every_steps", 0),
    ]
    return min([config.train.steps - step] + [k - step % k for k in intervals if k])


def _write_config(config: ml_collections.ConfigDict, workdir: epath.Path) -> None:
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        workdir_lib.write_atomically(
            workdir / workdir_lib.CONFIG, config.to_json_best_effort(indent=2) + "\n"
        )


class _Signals:
    """Ctrl-C (or SIGTERM) during `_train`. Before the first step it stops the run at once
    (KeyboardInterrupt, which the entry points print as one line; the request is kept too,
    since a library may swallow the exception, and `training` raises it again). From
    the first step on, it requests a checkpoint and a stop at the next boundary; a second
    Ctrl-C interrupts at once."""

    def __init__(self):
        self.requested, self._training, self._previous = [], False, {}

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():  # signals reach only it
            self._previous = {
                s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)
            }
            self._hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, *exc_info) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        if self._previous:
            sys.unraisablehook = self._hook

    @contextlib.contextmanager
    def training(self) -> Iterator[Callable[[], bool]]:
        """From here on, Ctrl-C requests a checkpoint and a stop; yields whether one was."""
        if self.requested:
            raise KeyboardInterrupt
        self._training = True
        yield lambda: bool(self.requested)

    def _handle(self, signum, frame) -> None:
        self.requested.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if not self._training:
            raise KeyboardInterrupt

    def _unraisable(self, unraisable) -> None:
        """Keeps quiet about a KeyboardInterrupt that a callback swallowed (JAX's garbage
        collection hook does): `training` raises it again."""
        if not issubclass(unraisable.exc_type, KeyboardInterrupt):
            self._hook(unraisable)
