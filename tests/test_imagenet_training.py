"""ImageNet-style training end to end on mocked tfds data: streaming batches, top-1/top-5
evaluation, checkpoints, and exact resumption."""

from unittest import mock

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnn_jax.training import checkpoint, metrics, train
from experiments import configs


def run(name, workdir, **overrides):
    """Trains on tfds's mock data, each checkpoint on disk before training goes on: while it
    opens a data set (every epoch and evaluation here), the mock sends the whole process's file
    calls into a folder of its own, where a checkpoint finishing in the background would vanish."""
    save = checkpoint.Checkpoints.save

    def save_and_wait(self, state):
        save(self, state)
        self.wait()

    config = configs.get_config(name, overrides)
    saving = mock.patch.object(checkpoint.Checkpoints, "save", save_and_wait)
    with saving, tfds.testing.mock_data(num_examples=64):
        return train.train_and_evaluate(config, workdir, allow_config_change=True)


def test_resnet18_smoke_trains_evaluates_top5_and_resumes_exactly(tmp_path):
    straight = run("imagenet_resnet18:smoke", tmp_path / "straight")
    assert straight["step"] == 6 and straight["params"] == 11_515_688  # option A = plain-18
    rows = metrics.read_metrics(tmp_path / "straight")
    val = [r for r in rows if r["split"] == "val"]
    assert [r["step"] for r in val] == [3, 6]
    assert all(0 <= r["top5_error"] <= r["error"] <= 100 for r in val)
    assert checkpoint.Checkpoints(tmp_path / "straight" / "checkpoints").all_steps() == [3, 6]

    run("imagenet_resnet18:smoke", tmp_path / "resumed", **{"train.steps": 3})
    resumed = run("imagenet_resnet18:smoke", tmp_path / "resumed")
    assert resumed["train_loss"] == straight["train_loss"]
    jax.tree.map(np.testing.assert_array_equal,
                 checkpoint.load(tmp_path / "resumed")[1]["params"],
                 checkpoint.load(tmp_path / "straight")[1]["params"])


def test_googlenet_smoke_trains_with_its_auxiliary_classifiers(tmp_path):
    summary = run("imagenet_googlenet:smoke", tmp_path)
    assert summary["step"] == 6 and np.isfinite(summary["train_loss"])
    assert "val_top5_error" in summary


@pytest.mark.parametrize("name, lr, batch, weight_decay", [
    ("imagenet_alexnet", 0.01, 128, 5e-4),
    ("imagenet_vgg16", 0.01, 256, 5e-4),
    ("imagenet_resnet50", 0.1, 256, 1e-4),
    ("imagenet_plain34", 0.1, 256, 1e-4),
    ("imagenet_inception_v4", 0.045, 256, 4e-5),
])
def test_recipes_follow_the_papers(name, lr, batch, weight_decay):
    config = configs.get_config(name)
    recipe = (config.optimizer.lr, config.train.batch_size, config.optimizer.weight_decay)
    assert recipe == (lr, batch, weight_decay)
    assert f"--config={name}" in (configs.DIRECTORY / f"{name}.py").read_text()


def test_googlenet_recipe():
    config = configs.get_config("imagenet_googlenet")
    assert config.train.aux_loss_weight == 0.3 and config.augment.name == "inception"
    assert (config.schedule.name, config.schedule.factor) == ("exponential", 0.96)
    assert config.schedule.every_steps == 8 * 5_005  # 4% every 8 epochs
