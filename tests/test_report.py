"""experiments.report on synthetic sweeps: the figures, report.md's numbers and verdicts, and
the command line."""

import json
import math
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import image

from cnn_jax import report
from cnn_jax.errors import DataError

ROOT = pathlib.Path(__file__).parent.parent
STEPS = 64_000
# Final (training, test) error % per net and seed: deeper plain nets train worse, deeper
# ResNets better, as in Figure 6.
DEGRADED = {
    "cifar_plain20": [(7.0, 9.0), (8.0, 10.0)],
    "cifar_plain56": [(15.0, 14.0), (17.0, 13.0)],
    "cifar_resnet20": [(6.0, 8.5), (6.5, 9.0)],
    "cifar_resnet56": [(3.0, 7.0), (2.0, 7.2)],
}
PARAMS = {20: 269_722, 56: 853_018}
FIGURES = ("figure1.png", "figure6.png", "diagnostics.png")


def write_run(workdir: pathlib.Path, net: str, seed: int, train: float, test: float) -> None:
    """A finished run whose curves decay from 90% to its final errors at STEPS."""
    workdir.mkdir(parents=True)
    decay = lambda final, step: final + (90.0 - final) * math.exp(-step / 8000) * (step < STEPS)
    rows = [{"step": s, "split": "train", "loss": 1.0, "error": decay(train, s), "lr": 0.1,
             "images_per_sec": 1000.0} for s in range(4000, STEPS + 1, 4000)]
    rows += [{"step": s, "split": "test", "loss": 1.0, "error": decay(test, s), "top5_error": 1.0}
             for s in range(8000, STEPS + 1, 8000)]
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    depth = int(re.search(r"\d+$", net)[0])
    diagnostics = []
    for s in range(0, STEPS + 1, 16000):
        row = {"step": s, "split": "diagnostics"}
        row |= {f"grad_norm/{k}": v * (1 + s / STEPS) for k, v in
                (("stem", 0.1), ("stage1", 0.5), ("stage2", 0.4), ("stage3", 0.3), ("head", 0.2))}
        if "resnet" in net:
            row |= {f"residual_ratio/stage{i}": 0.2 * i for i in (1, 2, 3)}
        diagnostics.append(row)
    (workdir / "diagnostics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in diagnostics))
    summary = {"model": net, "dataset": "cifar10", "seed": seed, "step": STEPS,
               "params": PARAMS.get(depth, 1000 * depth), "train_error": train, "test_error": test}
    (workdir / "summary.json").write_text(json.dumps(summary))


def write_sweep(directory: pathlib.Path, errors: dict[str, list]) -> pathlib.Path:
    seeds = max(len(v) for v in errors.values())
    overrides = {"train.steps": STEPS}
    record = {"nets": list(errors), "seeds": seeds, "arg": None, "overrides": overrides}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sweep.json").write_text(json.dumps(record))
    for net, per_seed in errors.items():
        for seed, (train, test) in enumerate(per_seed):
            write_run(directory / net / f"seed{seed}", net, seed, train, test)
    return directory


def swapped(errors, a, b):
    return {**errors, a: errors[b], b: errors[a]}


def read_report(directory: pathlib.Path) -> str:
    return (directory / "report.md").read_text()


def verdict(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"- **{name}"))


def assert_png(path: pathlib.Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
    pixels = image.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 200
    assert pixels[..., :3].std() > 0.01  # not a blank canvas


@pytest.fixture(scope="module")
def degraded(tmp_path_factory) -> pathlib.Path:
    directory = write_sweep(tmp_path_factory.mktemp("sweep") / "figure6", DEGRADED)
    report.write(directory)
    return directory


def test_writes_the_figures_and_report(degraded):
    for name in FIGURES:
        assert_png(degraded / name)
    text = read_report(degraded)
    for name in FIGURES:
        assert f"]({name})" in text


def test_table6_rows_are_the_means_and_stds_over_seeds(degraded):
    table6 = read_report(degraded).split("## Test error")[1].split("##")[0]
    row = r"^\| (\S+) \| ([\d,]+) \| ([\d.]+) ± ([\d.]+) \| (\d+) \| (\S+)"
    rows = re.findall(row, table6, re.MULTILINE)
    assert [r[0] for r in rows] == ["plain-20", "plain-56", "ResNet-20", "ResNet-56"]
    paper = {"ResNet-20": 8.75, "ResNet-56": 6.97, "plain-20": 9.5, "plain-56": 13.5}
    for (label, params, mean, std, n, paper_text), net in zip(rows, DEGRADED):
        tests = [test for _, test in DEGRADED[net]]
        assert int(params.replace(",", "")) == PARAMS[int(label.split("-")[1])]
        assert float(mean) == pytest.approx(np.mean(tests), abs=0.005)
        assert float(std) == pytest.approx(np.std(tests, ddof=1), abs=0.005)
        assert int(n) == 2
        assert paper_text.lstrip("~").startswith(f"{paper[label]}")


def test_training_error_table_pairs_plain_and_resnet_per_depth(degraded):
    row = r"^\| (\d+) \| ([\d.]+) ± ([\d.]+) \| 2 \| ([\d.]+) ± ([\d.]+) \| 2 \| ([-+\d.]+) \|$"
    rows = re.findall(row, read_report(degraded), re.MULTILINE)
    assert [int(r[0]) for r in rows] == [20, 56]
    for depth, *numbers in rows:
        plain = [t for t, _ in DEGRADED[f"cifar_plain{depth}"]]
        resnet = [t for t, _ in DEGRADED[f"cifar_resnet{depth}"]]
        expected = [np.mean(plain), np.std(plain, ddof=1), np.mean(resnet), np.std(resnet, ddof=1),
                    np.mean(resnet) - np.mean(plain)]
        assert [float(x) for x in numbers] == pytest.approx(expected, abs=0.005)


def test_verdicts_when_reproduced(degraded):
    text = read_report(degraded)
    degradation = verdict(text, "Degradation")
    assert "reproduced" in degradation and "not reproduced" not in degradation
    assert "16.00 ± 1.41%" in degradation and "7.50 ± 0.71%" in degradation  # plain-56, plain-20
    fix = verdict(text, "Fix")
    assert "reproduced on training and test error" in fix and "not reproduced" not in fix


def test_verdicts_when_not_reproduced(tmp_path):
    errors = swapped(DEGRADED, "cifar_plain20", "cifar_plain56")
    errors = swapped(errors, "cifar_resnet20", "cifar_resnet56")
    report.write(write_sweep(tmp_path, errors))
    text = read_report(tmp_path)
    assert "not reproduced" in verdict(text, "Degradation")
    assert "not reproduced" in verdict(text, "Fix")


def test_fix_on_one_metric_is_partly_reproduced(tmp_path):
    errors = dict(DEGRADED, cifar_resnet56=[(3.0, 9.5), (2.0, 9.9)])  # trains better, tests worse
    report.write(write_sweep(tmp_path, errors))
    assert "partly reproduced, on training error only" in verdict(read_report(tmp_path), "Fix")


def test_figure1_sweep_skips_what_it_lacks(tmp_path):
    errors = {n: DEGRADED[n] for n in ("cifar_plain20", "cifar_plain56")}
    written = report.write(write_sweep(tmp_path / "sweep", errors), tmp_path / "out")
    assert {p.name for p in written} == {*FIGURES, "report.md"}
    assert_png(tmp_path / "out" / "figure1.png")
    text = read_report(tmp_path / "out")
    assert "Fix: not tested" in text and "Same depth" not in text
    table6 = text.split("## Test error")[1].split("##")[0]
    assert re.findall(r"^\| (\S+) \| [\d,]+ \|", table6, re.MULTILINE) == ["plain-20", "plain-56"]


def test_resnet_only_sweep_draws_no_figure1(tmp_path):
    errors = {"cifar_resnet110": DEGRADED["cifar_resnet20"]}
    written = report.write(write_sweep(tmp_path, errors))
    assert {p.name for p in written} == {"figure6.png", "diagnostics.png", "report.md"}
    text = read_report(tmp_path)
    assert "Figure 1 (plain-20 vs plain-56): not drawn" in text
    assert "Degradation: not tested" in text and "6.43" in text


def test_unfinished_runs_are_skipped_and_named(tmp_path):
    write_sweep(tmp_path, DEGRADED)
    (tmp_path / "cifar_plain56" / "seed1" / "summary.json").unlink()
    report.write(tmp_path)
    text = read_report(tmp_path)
    assert "Skipped (no summary.json, unfinished?): cifar_plain56/seed1." in text
    assert re.search(r"^\| plain-56 \| [\d,]+ \| 14\.00 \| 1 \|", text, re.MULTILINE)


def test_no_runs_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="No finished runs"):
        report.write(tmp_path)


def cli(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "experiments.report", *map(str, args)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cli_on_an_empty_directory_prints_one_error_line(tmp_path):
    result = cli(tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: No finished runs"), result.stderr


def test_cli_writes_into_out(degraded, tmp_path):
    result = cli(degraded, f"--out={tmp_path / 'out'}")
    assert result.returncode == 0, result.stderr
    assert "report.md" in result.stderr
    assert (tmp_path / "out" / "report.md").read_text() == read_report(degraded)


def test_live_plot_keeps_each_runs_curves_and_draws_plain_and_resnet_panels(tmp_path):
    from cnn_jax.report.live import LivePlot

    plot = LivePlot(min_interval_s=0.0)
    for net in ("cifar_plain56", "cifar_resnet56"):
        workdir = tmp_path / "figure6" / net / "seed0"
        for step in (10, 20):
            plot(workdir, {"step": step, "split": "train", "loss": 1.0, "error": 50.0 - step})
        plot(workdir, {"step": 20, "split": "test", "loss": 1.0, "error": 40.0})
        plot(workdir, {"step": 20, "split": "diagnostics", "grad_norm/stem": 1.0})  # not a curve

    assert plot.curves[("cifar_plain56", str(tmp_path / "figure6/cifar_plain56/seed0"))] == {
        "train": ([10, 20], [40.0, 30.0]), "test": ([20], [40.0])}
    plain, resnet = plot.figure.axes
    assert [line.get_label() for line in plain.lines if not line.get_label().startswith("_")] == [
        "plain-56"
    ]
    assert [tuple(line.get_ydata()) for line in resnet.lines] == [(40.0, 30.0), (40.0,)]
    assert plot.png().startswith(b"\x89PNG")


def write_lesion(workdir: pathlib.Path, net: str, baseline: float, rise: float) -> None:
    """lesion.json as experiments.lesion writes it: 27 blocks, each raising the error by `rise`."""
    plain = "plain" in net
    blocks = [
        {
            "block": f"stage{s}_block{i}",
            "error": None if plain and s > 1 and i == 1 else baseline + rise,
        }
        for s in (1, 2, 3)
        for i in range(1, 10)
    ]
    k_curve = [{"deleted": k, "errors": [min(90.0, baseline + rise * k)] * 2} for k in range(1, 26)]
    record = {
        "net": net,
        "seed": 0,
        "examples": 10_000,
        "baseline_error": baseline,
        "blocks": blocks,
        "k_curve": k_curve,
        "draws": 2,
    }
    (workdir / "lesion.json").write_text(json.dumps(record))


def write_landscape(workdir: pathlib.Path, net: str, bumps: float) -> None:
    """landscape.npz: a bowl, with `bumps` of ripples on top."""
    alphas = np.linspace(-1, 1, 11)
    a, b = np.meshgrid(alphas, alphas, indexing="ij")
    loss = 0.1 + a ** 2 + b ** 2 + bumps * (np.sin(9 * a) * np.sin(9 * b) + 1)
    with (workdir / "landscape.npz").open("wb") as f:
        np.savez(
            f,
            alphas=alphas,
            betas=alphas,
            loss=loss,
            error=10 * loss,
            curve_alphas=alphas,
            curve_loss=loss[:, 5],
            curve_error=10 * loss[:, 5],
            net=net,
            seed=0,
            span=1.0,
            examples=512,
        )


def test_lesion_studies_and_landscapes_of_the_runs_are_drawn_and_described(tmp_path):
    directory = write_sweep(tmp_path / "figure6", DEGRADED)
    for net, rise, bumps in (("cifar_plain56", 60.0, 2.0), ("cifar_resnet56", 0.5, 0.0)):
        write_lesion(directory / net / "seed0", net, 10.0, rise)
        write_landscape(directory / net / "seed0", net, bumps)
    written = {p.name for p in report.write(directory)}
    assert {"lesion.png", "landscape.png"} <= written
    assert_png(directory / "lesion.png") and assert_png(directory / "landscape.png")
    text = read_report(directory)
    assert "Deleting one block of plain-56 raises its test error by 60.0 points on average" in text
    assert "Deleting one block of ResNet-56 raises its test error by 0.5 points on average (from " \
           "10.0% on 10000 test images" in text
    assert (
        "Loss landscape of ResNet-56 (seed 0, 11x11 grid, span 1, 512 training images): loss 0.100 "
        "at the solution"
        in text
        and "0% of the grid curving downward" in text
    )
    plain = next(
        line for line in text.splitlines() if line.startswith("- Loss landscape of plain-56")
    )
    assert not plain.endswith(" 0% of the grid curving downward.")


def test_sweeps_without_lesions_or_landscapes_leave_them_out(degraded):
    text = read_report(degraded)
    assert "Why residual nets train" not in text and not (degraded / "lesion.png").exists()
