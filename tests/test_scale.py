"""One train step on 1 device, 8 devices and 2 processes: the same numbers, portable checkpoints.

Device counts are fixed when JAX starts, so each run is its own process; the CPU stands in
for 8 accelerators (--xla_force_host_platform_device_count) and for 2 hosts (gloo).
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.training import checkpoint, metrics, steps

ROOT = pathlib.Path(__file__).parent.parent


def command(workdir, data_dir, steps_, *extra):
    return [
        sys.executable, "-m", "experiments.degradation", "--config=cifar_resnet20:smoke",
        "--config.model.width=8", "--config.train.batch_size=32", f"--config.train.steps={steps_}",
        "--config.train.log_every_steps=3", "--config.eval.every_steps=3",
        "--config.checkpoint.every_steps=3", "--config.dataset.name=fashion_mnist",
        "--config.dataset.source=files", f"--config.dataset.data_dir={data_dir}",
        f"--workdir={workdir}", *extra,
    ]


def run(args, devices=1, **kwargs):
    env = os.environ | {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    return subprocess.Popen(args, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, **kwargs)


def finish(process):
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    return output


def summary(workdir):
    return json.loads((pathlib.Path(workdir) / "summary.json").read_text())


def assert_params_close(a, b, rtol):
    pa, pb = checkpoint.load(a)[1]["params"], checkpoint.load(b)[1]["params"]
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol), pa, pb)


def test_8_devices_1_device_and_moving_checkpoints_between_them(tmp_path, fashion_mnist_dir):
    # A few steps on 1 and on 8 devices, then each continued on the other device count.
    finish(run(command(tmp_path / "one", fashion_mnist_dir, 3)))
    finish(run(command(tmp_path / "eight", fashion_mnist_dir, 3), devices=8))
    assert summary(tmp_path / "eight")["devices"] == 8
    np.testing.assert_allclose(
        summary(tmp_path / "one")["train_loss"],
        summary(tmp_path / "eight")["train_loss"],
        rtol=1e-5,
    )
    assert_params_close(tmp_path / "one", tmp_path / "eight", rtol=1e-4)

    longer = "--allow_config_change"  # train.steps 3 -> 6
    one_to_eight = finish(run(command(tmp_path / "one", fashion_mnist_dir, 6, longer), devices=8))
    eight_to_one = finish(run(command(tmp_path / "eight", fashion_mnist_dir, 6, longer)))
    assert "Resuming" in one_to_eight and "Resuming" in eight_to_one
    np.testing.assert_allclose(
        summary(tmp_path / "one")["train_loss"],
        summary(tmp_path / "eight")["train_loss"],
        rtol=1e-4,
    )
    assert_params_close(tmp_path / "one", tmp_path / "eight", rtol=1e-3)


def test_two_processes_write_one_set_of_files_that_one_process_resumes(tmp_path, fashion_mnist_dir):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    flags = [f"--coordinator_address=localhost:{port}", "--num_processes=2"]
    workers = [run(command(tmp_path, fashion_mnist_dir, 6, *flags, f"--process_id={i}"), devices=2)
               for i in range(2)]
    outputs = [finish(w) for w in workers]
    assert "finished at step 6" in outputs[0] and "finished at step" not in outputs[1]
    assert summary(tmp_path)["devices"] == 4
    rows = [(r["step"], r["split"]) for r in metrics.read_metrics(tmp_path)]
    assert rows == [(3, "train"), (3, "test"), (6, "train"), (6, "test")]  # written once
    assert checkpoint.Checkpoints(tmp_path / "checkpoints").all_steps() == [3, 6]

    resumed = finish(run(command(tmp_path, fashion_mnist_dir, 9, "--allow_config_change")))
    assert f"Resuming {tmp_path} from step 6" in resumed
    assert summary(tmp_path)["step"] == 9 and summary(tmp_path)["devices"] == 1


SLOW_TO_COMPILE = """
import runpy, time
from cnn_jax.training import steps

compile_steps = steps.TrainSteps.compile

def slow_compile(self, *args):
    seconds = compile_steps(self, *args)
    time.sleep(35)  # a host with a cold compilation cache on a loaded machine
    return seconds + 35

steps.TrainSteps.compile = slow_compile
runpy.run_module("experiments.degradation", run_name="__main__", alter_sys=True)
"""


def test_two_processes_wait_for_each_other_after_compiling(tmp_path, fashion_mnist_dir):
    """Process 1 compiles 35 s later than process 0, longer than gloo waits for the first
    collective (30 s): both train once both have compiled."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    flags = command(
        tmp_path,
        fashion_mnist_dir,
        3,
        f"--coordinator_address=localhost:{port}",
        "--num_processes=2",
    )
    fast = run(flags + ["--process_id=0"], devices=1)
    slow = run([sys.executable, "-c", SLOW_TO_COMPILE, *flags[3:], "--process_id=1"], devices=1)
    outputs = [finish(fast), finish(slow)]
    assert "finished at step 3" in outputs[0]
    assert summary(tmp_path)["devices"] == 2


class JustBatchNorm(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)


def test_bn_group_size_takes_statistics_per_group():
    x = jax.random.normal(jax.random.key(0), (8, 2, 2, 3)) * jnp.arange(1, 9)[:, None, None, None]
    model = JustBatchNorm()
    variables = model.init(jax.random.key(1), x)
    y, updates = steps.apply_in_groups(model, variables, x, jax.random.key(2), group_size=4)

    groups = np.asarray(x).reshape(2, 4, 2, 2, 3)
    mean = groups.mean(axis=(1, 2, 3), keepdims=True)
    var = groups.var(axis=(1, 2, 3), keepdims=True)
    expected = ((groups - mean) / np.sqrt(var + 1e-5)).reshape(x.shape)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    stats = updates["batch_stats"]["BatchNorm_0"]
    np.testing.assert_allclose(stats["mean"], 0.1 * mean.mean(0).ravel(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * var.mean(0).ravel(), rtol=1e-5)

    whole, _ = steps.apply_in_groups(model, variables, x, jax.random.key(2), group_size=0)
    assert not np.allclose(whole, y)  # the global batch normalizes differently


@pytest.mark.slow
def test_the_smoke_run_on_8_devices_ends_with_the_loss_of_1_device(tmp_path, fashion_mnist_dir):
    args = [
        "--config=cifar_resnet20:smoke",
        "--config.train.steps=20",
        "--config.dataset.name=fashion_mnist",
        "--config.dataset.source=files",
        f"--config.dataset.data_dir={fashion_mnist_dir}",
    ]
    base = [sys.executable, "-m", "experiments.degradation", *args]
    finish(run(base + [f"--workdir={tmp_path / 'one'}"]))
    finish(run(base + [f"--workdir={tmp_path / 'eight'}"], devices=8))
    one, eight = summary(tmp_path / "one")["train_loss"], summary(tmp_path / "eight")["train_loss"]
    assert f"{one:.3g}" == f"{eight:.3g}"
