"""A sweep directory read back (see experiments/sweeps.py): per net and seed, the metrics,
diagnostics and summary of every finished run, and curves averaged over the seeds."""

import dataclasses
import json
import math
import re
from typing import Any

import numpy as np
from etils import epath

from cnn_jax.errors import DataError
from cnn_jax.training.metrics import read_metrics

_NET = re.compile(r"^(?:cifar_)?(plain|resnet)(\d+)$")
_SEED = re.compile(r"^seed(\d+)$")


@dataclasses.dataclass(frozen=True)
class Run:
    """One finished run: SWEEP_DIR/<net>/seed<k>/."""

    net: str
    seed: int
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    diagnostics: list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Sweep:
    """The finished runs of a sweep by net, sweep.json ({} if absent), and the runs left out."""

    directory: epath.Path
    record: dict[str, Any]
    runs: dict[str, list[Run]]
    skipped: list[str]

    def net(self, kind: str, depth: int) -> str | None:
        """The name of the sweep's `kind` ("plain" or "resnet") net of `depth`, if it has one."""
        return next((n for n in self.runs if net_info(n) == (kind, depth)), None)

    def depths(self, kind: str) -> list[int]:
        """The depths of the sweep's `kind` nets, ascending."""
        return sorted(info[1] for info in map(net_info, self.runs) if info and info[0] == kind)


@dataclasses.dataclass(frozen=True)
class Curve:
    """A metric against the step: mean over seeds and the min-max band."""

    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    seeds: int


@dataclasses.dataclass(frozen=True)
class Stats:
    """Mean, sample standard deviation (nan for one value) and count of a final number."""

    mean: float
    std: float
    n: int


def net_info(net: str) -> tuple[str, int] | None:
    """"cifar_plain56" -> ("plain", 56), "cifar_resnet110" -> ("resnet", 110); else None."""
    match = _NET.match(net)
    return (match[1], int(match[2])) if match else None


def label(net: str) -> str:
    """The paper's name of a net: plain-56, ResNet-110; other names stay as they are."""
    info = net_info(net)
    if info is None:
        return net
    return f"{'plain' if info[0] == 'plain' else 'ResNet'}-{info[1]}"


def net_of_workdir(workdir: epath.PathLike) -> str:
    """The net a workdir trains: <net> of SWEEP_DIR/<net>/seed<k>, else the directory's name."""
    workdir = epath.Path(workdir)
    return workdir.parent.name if _SEED.match(workdir.name) else workdir.name


def load_sweep(sweep_dir: epath.PathLike) -> Sweep:
    """Reads every SWEEP_DIR/<net>/seed<k>/ with a summary.json; the others are listed in
    `skipped`. Raises DataError when no run has finished."""
    directory = epath.Path(sweep_dir)
    if not directory.is_dir():
        raise DataError(f"Sweep directory {directory} does not exist.")
    record_path = directory / "sweep.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    found = sorted(
        p.name for p in directory.iterdir()
        if p.is_dir() and any(_SEED.match(s.name) and s.is_dir() for s in p.iterdir())
    )
    nets = [n for n in record.get("nets", []) if n in found] + [
        n for n in found if n not in record.get("nets", [])
    ]
    runs, skipped = {}, []
    for net in nets:
        seeds = sorted(int(m[1]) for s in (directory / net).iterdir() if (m := _SEED.match(s.name)))
        for seed in seeds:
            workdir = directory / net / f"seed{seed}"
            if not (workdir / "summary.json").exists():
                skipped.append(f"{net}/seed{seed}")
                continue
            summary = json.loads((workdir / "summary.json").read_text())
            rows = read_metrics(workdir), read_metrics(workdir, "diagnostics.jsonl")
            runs.setdefault(net, []).append(Run(net, seed, summary, *rows))
    if not runs:
        unfinished = f" ({len(skipped)} without summary.json: unfinished?)" if skipped else ""
        raise DataError(
            f"No finished runs in {directory}{unfinished}; expected NET/seedK/summary.json."
        )
    return Sweep(directory, record, runs, skipped)


def final(runs: list[Run], key: str) -> Stats:
    """Mean, std and count over the runs of `summary[key]` (e.g. "train_error", "test_error")."""
    values = [float(r.summary[key]) for r in runs if _finite(r.summary.get(key))]
    if not values:
        return Stats(math.nan, math.nan, 0)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return Stats(float(np.mean(values)), std, len(values))


def curve(runs: list[Run], key: str, split: str = "train") -> Curve | None:
    """`key` of the `split` rows ("train", "test", or "diagnostics") against the step, over the
    seeds; the steps are those every seed logged (all logged steps if they share none)."""
    per_run = []
    for run in runs:
        rows = run.diagnostics if split == "diagnostics" else run.metrics
        rows = [r for r in rows if r.get("split") == split and _finite(r.get(key))]
        values = {r["step"]: float(r[key]) for r in rows}
        if values:
            per_run.append(values)
    if not per_run:
        return None
    steps = sorted(set.intersection(*map(set, per_run))) or sorted(set().union(*per_run))
    table = np.array([[values.get(s, np.nan) for s in steps] for values in per_run])
    mean, low, high = np.nanmean(table, 0), np.nanmin(table, 0), np.nanmax(table, 0)
    return Curve(np.array(steps), mean, low, high, len(per_run))


def diagnostic_keys(runs: list[Run], prefix: str) -> list[str]:
    """The diagnostics of the runs starting with `prefix` ("grad_norm/"), in network order:
    stem, stage1, stage2, ..., head, then any others."""
    keys = {k for r in runs for row in r.diagnostics for k in row if k.startswith(prefix)}

    def order(key: str) -> tuple[int, int, str]:
        stage = key[len(prefix):]
        if stage == "stem":
            return (0, 0, stage)
        if match := re.fullmatch(r"stage(\d+)", stage):
            return (1, int(match[1]), stage)
        return (2 if stage == "head" else 3, 0, stage)

    return sorted(keys, key=order)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
