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

from cnn_jax.errors import WorkdirError
from cnn_jax.training import workdir as workdir_lib

log = logging.getLogger(__name__)


MetricsCallback = Callable[[epath.Path, dict[str, Any]], None]
"""Called as `callback(workdir, row)` after each row is written (live plots in notebooks)."""


class MetricWriter:
    """Writes `{"step", "split", "loss", "error", ...}` rows to metrics.jsonl (rows of split
    "diagnostics", gradient norms and the like, to diagnostics.jsonl) and TensorBoard.

    Each row is appended and flushed as it is written, and the TensorBoard events with it, so
    a crash loses nothing written before it. Resuming from a checkpoint at step
    `resume_step` drops the rows written after it (and a line torn by a crash), so the files
    always describe the run that the checkpoints continue. Object stores (gs://) cannot
    append: there a file is rewritten whole at each write.
    """

    FILES = {"diagnostics": "diagnostics.jsonl"}  # by split; the others go to metrics.jsonl

    def __init__(
        self, workdir: epath.PathLike, resume_step: int = 0, on_write: MetricsCallback | None = None
    ):
        self.enabled = jax.process_index() == 0
        self.workdir = epath.Path(workdir)
        self.on_write = on_write
        if not self.enabled:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._appendable = "://" not in str(self.workdir)
        self._lines = {}
        for name in {"metrics.jsonl", *self.FILES.values()}:
            path = self.workdir / name
            rows = read_metrics(self.workdir, name)
            self._lines[name] = [json.dumps(r) for r in rows if r["step"] <= resume_step]
            if path.exists() and path.read_text() != _text(self._lines[name]):
                workdir_lib.write_atomically(path, _text(self._lines[name]))
        self._tensorboard = _Events(self.workdir, resume_step)

    def write(self, step: int, split: str, **values: Any) -> None:
        if not self.enabled:
            return
        filename = self.FILES.get(split, "metrics.jsonl")
        row = {"step": step, "split": split, **values}
        self._lines[filename].append(json.dumps(row))
        if self._appendable:
            with (self.workdir / filename).open("a") as f:
                f.write(self._lines[filename][-1] + "\n")
        else:
            (self.workdir / filename).write_text(_text(self._lines[filename]))
        if self.on_write:
            self.on_write(self.workdir, row)
        self._tensorboard.write(step, {f"{split}/{name}": value for name, value in values.items()
                                       if isinstance(value, (int, float)) and math.isfinite(value)})

    def close(self) -> None:
        if self.enabled:
            self._tensorboard.close()


class _Events:
    """A TensorBoard events file, each write on disk when it returns (tensorboardX's
    SummaryWriter writes from a thread of its own, which kill -9 leaves with nothing written)."""

    def __init__(self, workdir: epath.Path, resume_step: int):
        # Imported here: only process 0 needs it.
        from tensorboardX import event_file_writer, summary
        from tensorboardX.proto import event_pb2

        self._pb, self._scalar = event_pb2, summary.scalar
        self._writer = event_file_writer.EventsWriter(str(workdir / "events"))
        if resume_step:  # TensorBoard drops the earlier files' events after this step
            start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
            self._writer.write_event(
                self._pb.Event(step=resume_step, wall_time=time.time(), session_log=start)
            )

    def write(self, step: int, scalars: dict[str, float]) -> None:
        for tag, value in scalars.items():
            summary = self._scalar(tag, value)
            self._writer.write_event(
                self._pb.Event(step=step, wall_time=time.time(), summary=summary)
            )
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def read_metrics(workdir: epath.PathLike, filename: str = "metrics.jsonl") -> list[dict[str, Any]]:
    """The rows of a workdir's metrics.jsonl (or diagnostics.jsonl); none if it is missing.
    A last line cut short by a crash is left out, with one line of notice."""
    path = epath.Path(workdir) / filename
    lines = path.read_text().splitlines() if path.exists() else []
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise WorkdirError(
                    f"Line {number} of {path} is not a JSON object; the file is corrupt."
                ) from None
            log.warning("Left out the last line of %s, cut short by a crash: %.60s", path, line)
    return rows


def _text(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


class Progress:
    """A tqdm bar (steps, ETA, loss, error, images/s) on a terminal; log lines otherwise."""

    def __init__(self, first_step: int, total_steps: int):
        self.enabled = jax.process_index() == 0
        self.total_steps = total_steps
        self._bar = None
        if self.enabled and sys.stderr.isatty():
            self._bar = tqdm.tqdm(
                total=total_steps,
                initial=first_step,
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
            )
        self._start_time, self._start_step = time.perf_counter(), first_step

    def update(self, step: int, steps_done: int, train: dict[str, float]) -> None:
        """Reports `steps_done` more steps, now at `step`, with the latest training metrics."""
        if not self.enabled:
            return
        shown = (
            f"loss={train['loss']:.4f} error={train['error']:.2f}% "
            f"{train['images_per_sec']:.0f} img/s"
        )
        if self._bar is not None:
            self._bar.update(steps_done)
            self._bar.set_postfix_str(shown)
            return
        elapsed = time.perf_counter() - self._start_time
        rate = (step - self._start_step) / elapsed if elapsed > 0 else 0.0
        eta = (self.total_steps - step) / rate if rate > 0 else float("nan")
        log.info(
            "step %d/%d %s lr=%.4g eta %s",
            step,
            self.total_steps,
            shown,
            train["lr"],
            _duration(eta),
        )

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
