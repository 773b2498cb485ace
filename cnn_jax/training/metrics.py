"""Where a run's numbers go: metrics.jsonl, TensorBoard events, and the progress display.

Only process 0 writes; the other processes get writers that do nothing.
"""

import json
import logging
import math
import sys
import time
from typing import Any, Callable

import jax
import tqdm
from etils import epath

log = logging.getLogger(__name__)


MetricsCallback = Callable[[epath.Path, dict[str, Any]], None]
"""Called as `callback(workdir, row)` after each row is written (live plots in notebooks)."""


class MetricWriter:
    """Writes `{"step", "split", "loss", "error", ...}` rows to metrics.jsonl (rows of split
    "diagnostics", gradient norms and the like, to diagnostics.jsonl) and TensorBoard.

    Resuming from a checkpoint at step `resume_step` drops the rows written after it, so the
    files always describe the run that the checkpoints continue. A file is rewritten whole
    at each write (they stay small), which works on object stores without appends (gs://).
    """

    FILES = {"diagnostics": "diagnostics.jsonl"}  # by split; the others go to metrics.jsonl

    def __init__(self, workdir: epath.PathLike, resume_step: int = 0, on_write: MetricsCallback | None = None):
        self.enabled = jax.process_index() == 0
        self.workdir = epath.Path(workdir)
        self.on_write = on_write
        if not self.enabled:
            return
        from tensorboardX import SummaryWriter  # Imported here: only process 0 needs it.

        self.workdir.mkdir(parents=True, exist_ok=True)
        self._lines = {}
        for name in {"metrics.jsonl", *self.FILES.values()}:
            path = self.workdir / name
            rows = path.read_text().splitlines() if path.exists() else []
            self._lines[name] = [r for r in rows if r.strip() and json.loads(r)["step"] <= resume_step]
        self._tensorboard = SummaryWriter(str(workdir), purge_step=resume_step or None)

    def write(self, step: int, split: str, **values: Any) -> None:
        if not self.enabled:
            return
        filename = self.FILES.get(split, "metrics.jsonl")
        row = {"step": step, "split": split, **values}
        self._lines[filename].append(json.dumps(row))
        (self.workdir / filename).write_text("".join(line + "\n" for line in self._lines[filename]))
        if self.on_write:
            self.on_write(self.workdir, row)
        for name, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self._tensorboard.add_scalar(f"{split}/{name}", value, step)

    def close(self) -> None:
        if self.enabled:
            self._tensorboard.close()


def read_metrics(workdir: epath.PathLike, filename: str = "metrics.jsonl") -> list[dict[str, Any]]:
    """The rows of a workdir's metrics.jsonl (or diagnostics.jsonl); none if it is missing."""
    path = epath.Path(workdir) / filename
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Progress:
    """A tqdm bar (steps, ETA, loss, error, images/s) on a terminal; log lines otherwise."""

    def __init__(self, first_step: int, total_steps: int):
        self.enabled = jax.process_index() == 0
        self.total_steps = total_steps
        self._bar = None
        if self.enabled and sys.stderr.isatty():
            self._bar = tqdm.tqdm(
                total=total_steps, initial=first_step, unit="step", dynamic_ncols=True, file=sys.stderr
            )
        self._start_time, self._start_step = time.perf_counter(), first_step

    def update(self, step: int, steps_done: int, train: dict[str, float]) -> None:
        """Reports `steps_done` more steps, now at `step`, with the latest training metrics."""
        if not self.enabled:
            return
        shown = f"loss={train['loss']:.4f} error={train['error']:.2f}% {train['images_per_sec']:.0f} img/s"
        if self._bar is not None:
            self._bar.update(steps_done)
            self._bar.set_postfix_str(shown)
            return
        elapsed = time.perf_counter() - self._start_time
        rate = (step - self._start_step) / elapsed if elapsed > 0 else 0.0
        eta = (self.total_steps - step) / rate if rate > 0 else float("nan")
        log.info("step %d/%d %s lr=%.4g eta %s", step, self.total_steps, shown, train["lr"], _duration(eta))

    def evaluated(self, step: int, latest: dict[str, dict[str, float]]) -> None:
        splits = [s for s in ("val", "test") if s in latest]
        if not self.enabled or not splits:
            return
        text = f"step {step}: " + ", ".join(
            f"{s} loss={latest[s]['loss']:.4f} error={latest[s]['error']:.2f}%" for s in splits
        )
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            log.info("%s", text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
