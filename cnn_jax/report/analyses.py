"""The lesion studies and loss landscapes of a sweep's runs (experiments.lesion and
experiments.landscape write lesion.json and landscape.npz into the runs' workdirs): their
figures and one line each on what they show."""

import json
from typing import Any

import numpy as np
from etils import epath

from cnn_jax.analysis import figures, landscape, lesion
from cnn_jax.report import runs as runs_lib
from cnn_jax.report.runs import Sweep


def lesion_records(sweep: Sweep) -> list[dict[str, Any]]:
    """The lesion.json of every run of the sweep that has one."""
    paths = [
        _workdir(sweep, net, run.seed) / "lesion.json"
        for net, runs in sweep.runs.items()
        for run in runs
    ]
    return [json.loads(p.read_text()) for p in paths if p.exists()]


def landscapes(sweep: Sweep) -> list[tuple[str, dict[str, Any]]]:
    """(net, arrays of landscape.npz) of every run of the sweep that has one."""
    items = []
    for net, runs in sweep.runs.items():
        for run in runs:
            path = _workdir(sweep, net, run.seed) / "landscape.npz"
            if path.exists():
                with path.open("rb") as f, np.load(f) as data:
                    items.append((net, {k: data[k] for k in data.files}))
    return items


def lesion_figure(sweep: Sweep, path: epath.PathLike) -> bool:
    """lesion.png: plain and ResNet side by side (lowest seed of each net with a lesion study)."""
    return figures.lesion(lesion.one_per_net(lesion_records(sweep)), path)


def landscape_figure(sweep: Sweep, path: epath.PathLike) -> bool:
    """landscape.png: contours of each net's landscape (lowest seed) and the 1-D curves."""
    return figures.landscapes(landscapes(sweep), path)


def lines(sweep: Sweep) -> list[str]:
    """One line per net on its lesion study (means over the seeds that have one) and one per
    net on its landscape, each next to what the paper found."""
    out = []
    by_net: dict[str, list[dict[str, Any]]] = {}
    for record in lesion_records(sweep):
        by_net.setdefault(record["net"], []).append(record)
    for net, records in sorted(by_net.items(), key=lambda item: _order(item[0])):
        rises = [lesion.single_block_increase(r) for r in records]
        worst = max(records[0]["blocks"], key=lambda b: -1 if b["error"] is None else b["error"])
        half = [
            _k_error(r, len([b for b in r["blocks"] if b["error"] is not None]) // 2)
            for r in records
        ]
        baseline = np.mean([r["baseline_error"] for r in records])
        out.append(
            f"Deleting one block of {runs_lib.label(net)} raises its test error by "
            f"{np.mean(rises):.1f} points on average (from {baseline:.1f}% "
            f"on {records[0].get('examples', '?')} test images; "
            f"worst: {worst['block']}, {worst['error']:.1f}%); deleting half its deletable blocks "
            f"at random gives {np.nanmean(half):.1f}% ({len(records)} seed(s))."
        )
    for net, data in sorted(landscapes(sweep), key=lambda item: _order(item[0])):
        numbers = landscape.summary(data)
        out.append(
            f"Loss landscape of {runs_lib.label(net)} (seed {int(data['seed'])}, "
            f"{data['loss'].shape[0]}x{data['loss'].shape[1]} grid, span {float(data['span']):g}, "
            f"{int(data['examples'])} training images): loss {numbers['center_loss']:.3f} at the "
            f"solution, {numbers['border_loss']:.2f} on average on the border, "
            f"{100 * numbers['nonconvex_share']:.0f}% of the grid curving downward."
        )
    if out:
        out.append(
            "Papers: deleting one block of a CIFAR-10 ResNet-110 barely changes its error while "
            "deleting one layer of a VGG-style plain net drops it to chance, about 90% (Veit et "
            "al. 2016); ResNet-56's surface is smooth and nearly convex, the same net without "
            "shortcuts chaotic, more so with depth (Li et al. 2018)."
        )
    return out


def _k_error(record: dict[str, Any], k: int) -> float:
    rows = [row for row in record["k_curve"] if row["deleted"] == k]
    return float(np.mean(rows[0]["errors"])) if rows else float("nan")


def _order(net: str) -> tuple[int, str]:
    info = runs_lib.net_info(net)
    return (info[1], info[0]) if info else (0, net)


def _workdir(sweep: Sweep, net: str, seed: int) -> epath.Path:
    return sweep.directory / net / f"seed{seed}"
