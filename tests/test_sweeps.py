"""Seeds of one net trained together or in turn, sweeps, evaluation from checkpoints."""

import json
import subprocess
import sys

import jax
import numpy as np

from cnn_jax.data import augment, datasets
from cnn_jax.training import checkpoint, evaluation, metrics, train
from experiments import sweeps
from tests.conftest import ROOT, tiny_overrides
from tests.test_train import idx_config


def test_replicas_at_once_equal_one_after_another(tmp_path, idx_dir):
    group = [idx_config(idx_dir, **{"seed": seed, "train.steps": 2}) for seed in (0, 1)]
    together = train.train_replicas(group, [tmp_path / "together0", tmp_path / "together1"])
    alone = [train.train_and_evaluate(c, tmp_path / f"alone{i}") for i, c in enumerate(group)]
    assert [s["seed"] for s in together] == [0, 1] and together[0]["replicas"] == 2
    # vmap batches the convolutions: the same numbers up to float rounding (about 1e-7 after
    # two steps here; SGD on this tiny set amplifies it about tenfold per step after that).
    for i in range(2):
        np.testing.assert_allclose(together[i]["train_loss"], alone[i]["train_loss"], rtol=1e-5)
        assert abs(together[i]["test_error"] - alone[i]["test_error"]) <= 100 / 64  # one example
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
                     checkpoint.load(tmp_path / f"together{i}")[1]["params"],
                     checkpoint.load(tmp_path / f"alone{i}")[1]["params"])
    assert together[0]["train_loss"] != together[1]["train_loss"]  # the seeds differ


def test_a_sweep_writes_one_workdir_per_run_and_resumes_run_by_run(tmp_path, idx_dir):
    overrides = tiny_overrides(**{"dataset.name": "mnist", "dataset.source": "files",
                                  "dataset.data_dir": str(idx_dir), "train.steps": 4})
    nets = ("cifar_plain20", "cifar_resnet20")
    first = sweeps.run(nets, 2, tmp_path, "smoke", overrides, at_once=True)
    assert [(s["model"], s["seed"]) for s in first] == [(n, k) for n in nets for k in (0, 1)]
    assert json.loads((tmp_path / "sweep.json").read_text())["nets"] == list(nets)
    for net in nets:
        for seed in (0, 1):
            assert (sweeps.workdir(tmp_path, net, seed) / "summary.json").exists()
    again = sweeps.run(nets, 2, tmp_path, "smoke", overrides)
    assert all(s.get("already_finished") for s in again)


def test_diagnostics_log_gradient_norms_per_stage(tmp_path, idx_dir):
    for net in ("cifar_plain20", "cifar_resnet20"):
        train.train_and_evaluate(
            idx_config(idx_dir, net, **{"train.diagnostics_every_steps": 6}), tmp_path / net
        )
    plain = metrics.read_metrics(tmp_path / "cifar_plain20", "diagnostics.jsonl")
    resnet = metrics.read_metrics(tmp_path / "cifar_resnet20", "diagnostics.jsonl")
    assert [r["step"] for r in plain] == [6, 12]
    assert {"grad_norm/stem", "grad_norm/stage1", "grad_norm/stage3", "grad_norm/head"} <= set(
        plain[0]
    )
    assert not any(k.startswith("residual_ratio") for k in plain[0])
    assert all(resnet[0][f"residual_ratio/stage{i}"] > 0 for i in (1, 2, 3))


def test_evaluate_reproduces_the_runs_last_evaluation(tmp_path, idx_dir):
    summary = train.train_and_evaluate(idx_config(idx_dir), tmp_path)
    step, results = evaluation.evaluate_workdir(tmp_path)
    assert step == summary["step"]
    assert results["test"]["error"] == summary["test_error"]
    np.testing.assert_allclose(results["test"]["loss"], summary["test_loss"], rtol=1e-5)

    earlier_step, earlier = evaluation.evaluate_workdir(tmp_path, step=6)
    rows = [r for r in metrics.read_metrics(tmp_path) if r["split"] == "test" and r["step"] == 6]
    assert earlier_step == 6 and earlier["test"]["error"] == rows[0]["error"]

    command = [sys.executable, "-m", "experiments.evaluate", f"--workdir={tmp_path}"]
    output = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert json.loads(output.strip().splitlines()[-1])["test"]["error"] == summary["test_error"]


def test_load_gives_a_model_to_use_in_a_notebook(tmp_path, idx_dir):
    config = idx_config(idx_dir, **{"eval.max_examples": 0})
    summary = train.train_and_evaluate(config, tmp_path)
    model, variables, loaded = checkpoint.load(tmp_path)
    assert loaded.model.name == "cifar_resnet20" and loaded.model.width == 4
    test = datasets.load(loaded.dataset)["test"]
    images = augment.normalize(test.images, variables["data"]["pixel_mean"])
    predictions = np.argmax(model.apply(variables, images, train=False), -1)
    np.testing.assert_allclose(
        100 * np.mean(predictions != test.labels), summary["test_error"], atol=1e-4
    )


def test_a_missing_workdir_is_one_clear_error(tmp_path):
    command = [sys.executable, "-m", "experiments.evaluate", f"--workdir={tmp_path / 'nothing'}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("error:")
