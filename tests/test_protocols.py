"""The papers' test protocols (VGG section 3.2, Tables 3-5; ResNet Tables 4-5): dense
evaluation with FC layers as convolutions, multi-crop views, several scales combined."""

import json
from unittest import mock

import jax
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from cnn_jax import models
from cnn_jax.data import imagenet_ops
from cnn_jax.errors import ConfigError
from cnn_jax.training import protocols
from experiments import configs
from tests.test_imagenet_training import run

TINY_VGG = {"name": "vgg_a", "width": 8, "fc_features": 32}


def tiny_vgg():
    model = models.create("vgg_a", num_classes=10, width=8, fc_features=32)
    return model, model.init(jax.random.key(0), np.zeros((1, 224, 224, 3), np.float32))


def test_dense_vgg_at_the_training_size_is_the_plain_net():
    """fc6 as a 7x7 convolution and fc7-8 as 1x1 ones compute exactly the FC layers."""
    model, variables = tiny_vgg()
    images = jax.random.normal(jax.random.key(1), (2, 224, 224, 3))
    dense = jax.jit(model.clone(dense=True).apply)
    np.testing.assert_array_equal(dense(variables, images), jax.jit(model.apply)(variables, images))
    # A larger image gives a 2x3 score map, averaged: one score per class.
    assert dense(variables, np.ones((1, 256, 288, 3), np.float32)).shape == (1, 10)


def test_dense_evaluation_averages_the_image_and_its_flip():
    model, variables = tiny_vgg()
    image = jax.random.normal(jax.random.key(2), (1, 256, 288, 3))
    evaluate_dense = protocols.make_log_posteriors(model.clone(dense=True), "dense")
    log_posteriors = evaluate_dense(variables, image)
    dense = jax.jit(model.clone(dense=True).apply)
    softmax = lambda x: jax.nn.softmax(dense(variables, x))
    expected = (softmax(image) + softmax(image[:, :, ::-1])) / 2
    np.testing.assert_allclose(np.exp(log_posteriors), expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(expected, softmax(image), rtol=1e-3, atol=0)


def test_nets_without_a_convolutional_head_refuse_dense_evaluation():
    with pytest.raises(
        ConfigError, match="Dense evaluation needs a net whose head applies as conv"
    ):
        protocols.dense_model(models.create("alexnet", num_classes=10), "alexnet")
    resnet = models.create("resnet18", num_classes=10)
    assert protocols.dense_model(resnet, "resnet18") is resnet  # global average pooling


def test_multi_crop_views_are_a_5x5_grid_and_its_flips():
    image = tf.reshape(tf.range(300 * 260 * 3, dtype=tf.float32), (300, 260, 3))
    views = imagenet_ops.grid_crops(image, 224).numpy()
    assert views.shape == (50, 224, 224, 3)
    np.testing.assert_array_equal(views[0], image[:224, :224])
    np.testing.assert_array_equal(views[24], image[-224:, -224:])
    np.testing.assert_array_equal(views[12], image[38:262, 18:242])  # the centre
    np.testing.assert_array_equal(views[25:], views[:25, :, ::-1])


def test_whole_images_keep_the_shorter_side_and_round_the_longer_to_the_stride():
    encoded = tf.io.encode_png(tf.zeros((300, 410, 3), tf.uint8))
    assert imagenet_ops.whole_image(encoded, 256).shape == (256, 352, 3)  # 410 * 256 / 300 = 350
    encoded = tf.io.encode_png(tf.zeros((410, 300, 3), tf.uint8))
    assert imagenet_ops.whole_image(encoded, 384).shape == (512, 384, 3)  # 524.8 -> 512


def train_on_mock_data(config_name, workdir, **fields):
    """`run` of tests/test_imagenet_training.py, with model fields the recipe does not list
    (a narrow VGG)."""
    config = configs.get_config(config_name, {"eval.max_examples": 4})
    with config.unlocked():
        for field, value in fields.items():
            setattr(config.model, field, value)
    with mock.patch.object(configs, "get_config", lambda *_: config):
        return run(config_name, workdir)


def evaluate_command(workdir, protocol, scales):
    """What `python -m experiments.evaluate --workdir=... --protocol=... --scales=...` prints,
    computed in this process (the mock data sets are patched in here)."""
    result = protocols.evaluate(workdir, protocol, [int(q) for q in scales.split(",")])
    print(json.dumps(result))


@pytest.mark.slow  # 2-8 minutes on 2 CPU cores: a net compiled for each image shape
@pytest.mark.parametrize("name, overrides, scales", [
    ("imagenet_vgg16:smoke", TINY_VGG, "224,256"),
    ("imagenet_resnet18:smoke", {}, "64,96"),
])
def test_dense_evaluation_of_mock_imagenet_runs_per_scale_and_combined(
    tmp_path, capsys, name, overrides, scales
):
    train_on_mock_data(name, tmp_path, **overrides)
    with tfds.testing.mock_data(num_examples=4):
        evaluate_command(tmp_path, "dense", scales)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["step"] == 6 and result["protocol"] == "dense"
    assert sorted(result["scales"]) == sorted(scales.split(","))
    for values in [*result["scales"].values(), result["combined"]]:
        assert 0 <= values["top5_error"] <= values["error"] <= 100 and np.isfinite(values["loss"])


@pytest.mark.slow
def test_multi_crop_and_ten_crop_of_a_mock_resnet_run(tmp_path):
    train_on_mock_data("imagenet_resnet18:smoke", tmp_path)
    with tfds.testing.mock_data(num_examples=4):
        for protocol in ("multi_crop", "ten_crop", "center"):
            result = protocols.evaluate(tmp_path, protocol, [64, 80])
            assert set(result["scales"]) == {64, 80}
            assert set(result["combined"]) == {"error", "top5_error", "loss"}


def test_a_protocol_on_a_cifar_run_is_one_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"dataset": {"name": "cifar10"}}))
    with pytest.raises(ConfigError, match="--protocol applies to ImageNet-style runs"):
        protocols.evaluate(tmp_path, "dense", [256])
