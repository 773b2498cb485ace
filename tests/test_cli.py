"""The command line: one clear sentence and a non-zero exit for every bad input; Ctrl-C saves."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from cnn_jax.training import checkpoint, metrics

ROOT = pathlib.Path(__file__).parent.parent


def degradation(*args, devices=1, **popen):
    env = os.environ | {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    command = [sys.executable, "-m", "experiments.degradation", *args]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,
    )


def fails_with(*args, message, devices=1):
    process = degradation(*args, devices=devices)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and message in last_line, stderr
    return last_line


def test_unknown_config_lists_the_known_ones():
    fails_with("--config=cifar_resnet21", message="known configs: cifar_plain110, cifar_plain20")


def test_unknown_override_suggests_the_field():
    fails_with("--config=cifar_resnet20", "--config.train.stepz=5", message='Did you mean "steps"')


def test_depth_that_is_not_6n_plus_2(tmp_path):
    fails_with(
        "--config=cifar_resnet20",
        "--config.model.name=cifar_resnet21",
        f"--workdir={tmp_path}",
        message="depth 21 is not",
    )


def test_batch_that_does_not_divide_over_the_devices(tmp_path):
    fails_with("--config=cifar_resnet20", "--config.train.batch_size=12", f"--workdir={tmp_path}",
               devices=8, message="train.batch_size=12 is not divisible by the 8 devices")


def test_missing_data_names_the_folder(tmp_path):
    fails_with("--config=cifar_resnet20:smoke", "--config.dataset.source=files",
               f"--config.dataset.data_dir={tmp_path}", f"--workdir={tmp_path / 'run'}",
               message=f"No cifar10 files in {tmp_path}")


def test_ctrl_c_saves_a_checkpoint_and_the_same_command_resumes(tmp_path, fashion_mnist_dir):
    args = [
        "--config=cifar_resnet20:smoke",
        "--config.model.width=4",
        "--config.train.batch_size=16",
        "--config.train.log_every_steps=5",
        "--config.dataset.name=fashion_mnist",
        "--config.dataset.source=files",
        f"--config.dataset.data_dir={fashion_mnist_dir}",
        f"--workdir={tmp_path}",
    ]
    # A run that cannot finish before the signal, sent once its first metrics row is written.
    process = degradation(*args, "--config.train.steps=1000000")
    deadline = time.time() + 240
    while time.time() < deadline and not metrics.read_metrics(tmp_path):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Stopped at step" in stderr and "Traceback" not in stderr
    saved = checkpoint.Checkpoints(tmp_path / "checkpoints").latest_step()
    assert 0 < saved < 1000000

    finish = [*args, f"--config.train.steps={saved + 10}", "--allow_config_change"]
    process = degradation(*finish)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert f"Resuming {tmp_path} from step {saved}" in stderr
    assert metrics.read_metrics(tmp_path)[-1]["step"] == saved + 10

    process = degradation(*finish)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0 and "already finished" in stderr


def test_a_workdir_that_is_a_file_or_cannot_be_written(tmp_path):
    (tmp_path / "a_file").write_text("")
    fails_with("--config=cifar_resnet20:smoke", f"--workdir={tmp_path / 'a_file'}",
               message=f"Cannot write the run's files in {tmp_path / 'a_file'} (File exists)")
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root writes anywhere on a writable file system, but not in /sys
        read_only = pathlib.Path("/sys/cnn_jax_run")
    fails_with("--config=cifar_resnet20:smoke", f"--workdir={read_only}",
               message=f"Cannot write the run's files in {read_only}")


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.train.batch_size=0", "train.batch_size must be at least 1, not 0."),
        ("--config.train.steps=-5", "train.steps must be at least 1, not -5."),
        (
            "--config.train.steps=abc",
            "flag --config.train.steps=abc: invalid literal for int() with base 10: 'abc'.",
        ),
    ],
)
def test_values_a_run_cannot_have(tmp_path, override, message):
    fails_with(
        "--config=cifar_resnet20:smoke", override, f"--workdir={tmp_path / 'run'}", message=message
    )
    assert not (tmp_path / "run").exists()


def test_ctrl_c_before_the_first_step_is_one_sentence_and_leaves_nothing(
    tmp_path, fashion_mnist_dir
):
    workdir = tmp_path / "run"
    process = degradation(
        "--config=cifar_resnet20:smoke",
        "--config.dataset.name=fashion_mnist",
        "--config.dataset.source=files",
        f"--config.dataset.data_dir={fashion_mnist_dir}",
        f"--workdir={workdir}",
    )
    deadline = time.time() + 240
    while time.time() < deadline and not (workdir / "run.lock").exists():
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)  # while it reads the data or compiles
    _, stderr = process.communicate(timeout=120)
    # 130, or killed by SIGINT, which is how Python 3.11 ends after an interrupt has passed
    # through exec() (dataclasses build their methods with it); a shell shows both as 130.
    assert process.returncode in (130, -signal.SIGINT), stderr
    assert "Traceback" not in stderr
    assert (
        stderr.strip()
        .splitlines()[-1]
        .startswith("error: Interrupted before a checkpoint could be saved")
    )
    assert not workdir.exists()  # no empty checkpoints/, no lock: the folder it made is gone
