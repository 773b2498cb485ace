"""The loss landscape: filter-normalised directions and the loss over a grid around a run."""

import subprocess
import sys

import jax
import numpy as np
import pytest

from cnn_jax import models
from cnn_jax.analysis import landscape, trained
from cnn_jax.data import augment, datasets
from cnn_jax.training import checkpoint, steps, train
from experiments import configs
from tests.conftest import ROOT
from tests.test_train import idx_config


def params_of(name):
    model = models.create(name, num_classes=10, width=4)
    return model.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))["params"]


def test_each_filter_of_a_direction_has_the_norm_of_the_trained_filter():
    params = params_of("cifar_resnet20")
    d1, d2 = landscape.directions(params, seed=0)
    kernel, direction = (
        params["stage2_block1"]["Conv_0"]["kernel"],
        d1["stage2_block1"]["Conv_0"]["kernel"],
    )
    assert kernel.shape == direction.shape == (3, 3, 4, 8)
    norms = lambda x: np.sqrt(np.sum(np.square(x), axis=(0, 1, 2)))  # per output filter
    np.testing.assert_allclose(norms(direction), norms(kernel), rtol=1e-5)
    np.testing.assert_allclose(
        norms(d1["head"]["kernel"][None, None]),
        norms(params["head"]["kernel"][None, None]),
        rtol=1e-5,
    )
    assert not np.any(d1["head"]["bias"]) and not np.any(
        d1["stem_bn"]["scale"]
    )  # biases, BN: no direction
    assert not np.allclose(d1["stem_conv"]["kernel"], d2["stem_conv"]["kernel"])


def test_one_seed_gives_plain_and_resnet_nets_the_same_raw_directions():
    key = jax.random.key(3)
    plain, resnet = params_of("cifar_plain20"), params_of("cifar_resnet20")
    jax.tree.map(
        np.testing.assert_array_equal,
        landscape.random_direction(key, plain),
        landscape.random_direction(key, resnet),
    )


def test_the_landscapes_centre_is_the_trained_nets_loss_on_the_same_images(tmp_path, idx_dir):
    train.train_and_evaluate(idx_config(idx_dir, "cifar_plain20"), tmp_path)
    data = landscape.surface(
        trained.restore(tmp_path), grid=3, span=0.5, examples=48, batch_size=16
    )
    assert data["loss"].shape == data["error"].shape == (3, 3)

    model, variables, config = checkpoint.load(tmp_path)
    subset = datasets.load(config.dataset)["train"].take(slice(0, 48))
    logits = model.apply(
        variables, augment.normalize(subset.images, variables["data"]["pixel_mean"])
    )
    loss = float(steps.cross_entropy(logits, subset.labels).mean())
    error = 100 * int(np.sum(np.argmax(logits, -1) != subset.labels)) / 48
    np.testing.assert_allclose(data["loss"][1, 1], loss, rtol=1e-5)
    assert data["error"][1, 1] == error
    np.testing.assert_array_equal(data["curve_loss"], data["loss"][:, 1])  # b = 0
    assert data["loss"][0, 0] != loss  # the directions move the net
    assert landscape.summary(data)["center_loss"] == data["loss"][1, 1]


def run_command(name, *args):
    result = subprocess.run(
        [sys.executable, "-m", f"experiments.{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode, result.stderr.strip().splitlines()


@pytest.mark.parametrize("command", ["lesion", "landscape"])
def test_bad_input_is_one_error_line(tmp_path, command):
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    (untrained / "config.json").write_text(configs.get_config("cifar_resnet20").to_json())
    lenet = tmp_path / "lenet"
    lenet.mkdir()
    config = configs.get_config("cifar_resnet20")
    config.model.name = "lenet5"
    (lenet / "config.json").write_text(config.to_json())
    for workdir, message in (
        (untrained, "has no checkpoint"),
        (lenet, "need a CIFAR net"),
        (tmp_path / "missing", "does not exist"),
    ):
        code, lines = run_command(command, f"--workdir={workdir}")
        assert code == 1 and lines[-1].startswith("error:") and message in lines[-1], lines
    if command == "landscape":
        code, lines = run_command(command, f"--workdir={untrained}", "--grid=2")
        assert code == 1 and lines[-1] == "error: --grid needs at least 3 points a side, got 2."
