"""What a workdir accepts: the run it was started with, one run at a time, files that survive
kill -9. The crash tests run the command in real processes and stop them with real signals."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from cnn_jax.errors import ConfigError
from cnn_jax.training import checkpoint, metrics, train, workdir
from experiments.train import default_workdir
from tests.conftest import ROOT, tiny_overrides
from tests.test_train import idx_config


def command(idx_dir, run_dir, *extra, **overrides):
    """The degradation command on the small MNIST-format set, as flags."""
    values = tiny_overrides(**{"dataset.name": "mnist", "dataset.source": "files",
                               "dataset.data_dir": str(idx_dir), **overrides})
    return [sys.executable, "-m", "experiments.degradation", "--config=cifar_resnet20:smoke",
            *[f"--config.{k}={v}" for k, v in values.items()], f"--workdir={run_dir}", *extra]


def start(args):
    env = os.environ | {"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    return subprocess.Popen(
        args, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def finish(process, returncode: int | None = 0):
    output, _ = process.communicate(timeout=600)
    assert returncode is None or process.returncode == returncode, output
    return output


def saved_steps(run_dir):
    return sorted(int(p.name) for p in (run_dir / "checkpoints").glob("*") if p.name.isdigit())


def wait_for(condition, timeout=300, every=0.05):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(every)


def rows_without_timing(run_dir):
    return [
        {k: v for k, v in r.items() if k != "images_per_sec"} for r in metrics.read_metrics(run_dir)
    ]


def assert_same_params(a, b):
    jax.tree.map(
        np.testing.assert_array_equal,
        checkpoint.load(a)[1]["params"],
        checkpoint.load(b)[1]["params"],
    )


# ----- The run a workdir holds -----------------------------------------------------------


def test_a_resume_with_another_net_batch_or_data_set_is_refused_naming_the_field(tmp_path, idx_dir):
    train.train_and_evaluate(idx_config(idx_dir, **{"train.steps": 6}), tmp_path)
    for field, value, message in [
        ("model.name", "cifar_plain20", "model.name='cifar_resnet20' there, 'cifar_plain20' now"),
        ("train.batch_size", 32, "train.batch_size=16 there, 32 now"),
        ("dataset.name", "fashion_mnist", "dataset.name='mnist' there, 'fashion_mnist' now"),
    ]:
        other = idx_config(idx_dir)
        section, name = field.split(".")
        other[section][name] = value
        with pytest.raises(
            ConfigError,
            match=f"holds a run with another {field} \\({message}\\); use a new --workdir",
        ):
            train.train_and_evaluate(other, tmp_path, allow_config_change=True)
    assert json.loads((tmp_path / "config.json").read_text())["model"]["name"] == "cifar_resnet20"

    # A finished run is not "already finished" for another config either.
    with pytest.raises(ConfigError, match="another train.steps .*pass --allow_config_change"):
        train.train_and_evaluate(idx_config(idx_dir), tmp_path)
    extended = train.train_and_evaluate(idx_config(idx_dir), tmp_path, allow_config_change=True)
    assert extended["step"] == 12 and "already_finished" not in extended
    assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 12


def test_the_readme_commands_on_two_data_sets_get_two_default_workdirs():
    fashion = {"dataset.name": "fashion_mnist", "dataset.source": "files",
               "dataset.data_dir": "/usr/share/datasets/fashion-mnist"}
    assert default_workdir("cifar_plain56_smoke", {}) == "runs/cifar_plain56_smoke"
    assert (
        default_workdir("cifar_plain56_smoke", fashion)
        == "runs/cifar_plain56_smoke_fashion_mnist_source=files"
    )
    # Fields that do not define the run (see --allow_config_change) keep the workdir.
    assert (
        default_workdir("cifar_plain56_smoke", {"train.steps": 500, "eval.every_steps": 10})
        == "runs/cifar_plain56_smoke"
    )
    assert default_workdir(
        "cifar_resnet20", {"model.width": 8, "schedule.boundaries": (50, 75)}
    ) == ("runs/cifar_resnet20_width=8_boundaries=50-75")


# ----- One run at a time --------------------------------------------------------------------


def test_of_two_runs_started_together_on_one_workdir_one_trains_and_one_is_refused(
    tmp_path, idx_dir
):
    args = command(idx_dir, tmp_path / "run", **{"train.steps": 24})
    first, second = start(args), start(args)
    outputs = {p.pid: finish(p, returncode=None) for p in (first, second)}
    winner, loser = sorted((first, second), key=lambda p: p.returncode)
    assert (winner.returncode, loser.returncode) == (0, 1), outputs
    last_line = outputs[loser.pid].strip().splitlines()[-1]
    assert last_line.startswith(
        f"error: {tmp_path / 'run'} is in use by the run of process {winner.pid} on "
        f"{socket.gethostname()}"
    ), outputs[loser.pid]
    assert "finished at step 24" in outputs[winner.pid]
    assert checkpoint.Checkpoints(tmp_path / "run" / "checkpoints").all_steps() == [12, 18, 24]
    assert not (tmp_path / "run" / workdir.LOCK).exists()  # released on exit


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path, idx_dir):
    run_dir = tmp_path / "run"
    killed = start(command(idx_dir, run_dir, **{"train.steps": 100_000}))
    wait_for(lambda: saved_steps(run_dir))
    killed.send_signal(signal.SIGKILL)
    finish(killed, returncode=-signal.SIGKILL)
    assert json.loads((run_dir / workdir.LOCK).read_text())["pid"] == killed.pid  # left behind

    steps = saved_steps(run_dir)[-1] + 6
    output = finish(
        start(command(idx_dir, run_dir, "--allow_config_change", **{"train.steps": steps}))
    )
    assert f"Took over {run_dir / workdir.LOCK} from process {killed.pid}" in output
    assert f"finished at step {steps}" in output


# ----- Files that survive a crash ---------------------------------------------------------


def test_kill_9_during_a_checkpoint_save_then_resume_ends_bit_identical(tmp_path, idx_dir):
    overrides = {"train.steps": 60, "checkpoint.every_steps": 1}
    straight = start(command(idx_dir, tmp_path / "straight", **overrides))
    crashed = start(command(idx_dir, tmp_path / "crashed", **overrides))
    def saving():  # a checkpoint after step 4's metrics is being written
        return [p for p in (tmp_path / "crashed" / "checkpoints").glob("*.orbax-checkpoint-tmp*")
                if int(p.name.split(".")[0]) > 4]

    wait_for(saving, every=0.001)
    crashed.send_signal(signal.SIGKILL)
    finish(crashed, returncode=-signal.SIGKILL)
    finish(straight)
    assert saving()  # the kill came in the middle of writing a checkpoint
    events = list((tmp_path / "crashed").glob("events.out.tfevents.*"))
    assert b"train/loss" in events[0].read_bytes()  # flushed at every log step

    output = finish(start(command(idx_dir, tmp_path / "crashed", **overrides)))
    assert "Resuming" in output and "finished at step 60" in output
    assert rows_without_timing(tmp_path / "crashed") == rows_without_timing(tmp_path / "straight")
    assert_same_params(tmp_path / "crashed", tmp_path / "straight")


def test_a_line_torn_by_a_crash_is_dropped_on_resume_with_a_notice(tmp_path, idx_dir, caplog):
    train.train_and_evaluate(idx_config(idx_dir, **{"train.steps": 6}), tmp_path)
    complete = metrics.read_metrics(tmp_path)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 8, "split": "train", "loss": 1.2')  # what a crash mid-write leaves
    with caplog.at_level("WARNING", logger="cnn_jax"):
        train.train_and_evaluate(idx_config(idx_dir), tmp_path, allow_config_change=True)
    assert [r.getMessage() for r in caplog.records if "cut short" in r.getMessage()] == [
        f'Left out the last line of {tmp_path / "metrics.jsonl"}, cut short by a crash: '
        '{"step": 8, "split": "train", "loss": 1.2'
    ]
    rows = metrics.read_metrics(tmp_path)
    assert rows[:len(complete)] == complete and rows[-1]["step"] == 12


def test_files_are_replaced_whole(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("old")
    workdir.write_atomically(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_an_imagenet_run_written_before_its_recipe_named_every_field_reads_and_resumes(tmp_path):
    from experiments import configs

    config = configs.get_config("imagenet_alexnet:smoke")
    written = json.loads(config.to_json_best_effort())
    for section, field in (("dataset", "tfds_name"), ("dataset", "shuffle_buffer"),
                           ("augment", "resize"), ("augment", "aspect_range"),
                           ("augment", "normalize"), ("augment", "mean_rgb"),
                           ("augment", "stddev_rgb"), ("train", "ema_decay")):
        del written[section][field]
    (tmp_path / "config.json").write_text(json.dumps(written))
    (tmp_path / "checkpoints" / "10").mkdir(parents=True)
    # It reads as what was in effect: standardized inputs, ImageNet's statistics.
    old = checkpoint.read_config(tmp_path)
    assert old.augment.normalize == "standardize" and old.augment.resize == 256
    assert tuple(old.augment.mean_rgb) == tuple(config.augment.mean_rgb)
    # The same recipe with the inputs it then had resumes it; today's AlexNet inputs do not.
    config.augment.normalize = "standardize"
    workdir.check_config(config, tmp_path)
    config.augment.normalize = "subtract_mean"
    with pytest.raises(ConfigError, match="another augment.normalize"):
        workdir.check_config(config, tmp_path)
