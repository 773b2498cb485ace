"""Starting a run from another's checkpoint (the config's `init` section), class subsets of a
data set, and the configs that use them."""

import shutil
from unittest import mock

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds

from cnn_jax import models
from cnn_jax import sharding
from cnn_jax.data import catalog, datasets
from cnn_jax.errors import ConfigError
from cnn_jax.training import checkpoint, initialize, optim, state as state_lib
from cnn_jax.training import train
from experiments import configs
from experiments.configs import _imagenet
from tests.conftest import tiny_overrides


def variables(name: str, seed: int, num_classes: int = 10, **overrides) -> dict:
    """A net's variables; those of seed 1 (the sources here) are shifted by 1, so that no
    leaf of a source equals the fresh net's (biases start at zero)."""
    model = models.create(name, num_classes=num_classes, fc_features=16, **overrides)
    initial = model.init(jax.random.key(seed), jnp.zeros((1, 32, 32, 3)))
    return jax.tree.map(lambda x: x + seed, initial)


def init_section(**fields) -> ml_collections.ConfigDict:
    section = initialize.section("runs/source")
    section.update(fields)
    return section


def from_where(new: dict, fresh: dict, source: dict) -> dict[str, str]:
    """For every leaf path of `new`: "source" or "fresh", whichever it equals."""
    where = {}
    for key, value in initialize.flatten(new).items():
        if np.array_equal(value, initialize.flatten(source).get(key, np.nan)):
            where[key[1]] = "source"
        else:
            assert np.array_equal(value, initialize.flatten(fresh)[key]), key
            where[key[1]] = "fresh"
    return where


def test_include_copies_exactly_the_leaves_it_names():
    fresh, source = variables("vgg_a", 0, width=8), variables("vgg_a", 1, width=8)
    new, copied = initialize.copy_variables(fresh, source, init_section(include=("conv2_1", "fc7")))
    assert sorted(copied) == ["conv2_1/bias", "conv2_1/kernel", "fc7/bias", "fc7/kernel"]
    where = from_where(new, fresh, source)
    assert sorted(p for p, w in where.items() if w == "source") == sorted(copied)


def test_vgg_d_from_a_has_exactly_a_s_first_four_convolutions_and_its_fully_connected_layers():
    config = configs.get_config("imagenet_vgg16", {"init.workdir": "runs/imagenet_vgg_a"})
    fresh, source = variables("vgg_d", 0, width=8), variables("vgg_a", 1, width=8)
    new, _ = initialize.copy_variables(fresh, source, config.init)
    copied = {p.split("/")[0] for p, w in from_where(new, fresh, source).items() if w == "source"}
    assert copied == {"conv1_1", "conv2_1", "conv3_1", "conv3_2", "fc6", "fc7", "fc8"}
    assert configs.get_config("imagenet_vgg19").init.include == _imagenet.VGG_FROM_A


def test_rename_copies_between_layers_of_other_names():
    fresh, source = variables("vgg_d", 0, width=8), variables("vgg_a", 1, width=8)
    init = init_section(include=("conv3_2",), rename=(("conv3_(2)", r"conv3_3"),))
    new, copied = initialize.copy_variables(fresh, source, init)
    assert sorted(copied) == ["conv3_3/bias", "conv3_3/kernel"]
    np.testing.assert_array_equal(
        new["params"]["conv3_3"]["kernel"], source["params"]["conv3_2"]["kernel"]
    )
    np.testing.assert_array_equal(
        new["params"]["conv3_2"]["kernel"], fresh["params"]["conv3_2"]["kernel"]
    )


def test_batch_norm_statistics_come_with_their_layers_and_exclude_wins():
    fresh, source = variables("vgg_a_bn", 0, width=8), variables("vgg_a_bn", 1, width=8)
    _, copied = initialize.copy_variables(fresh, source, init_section(include=("bn2_1", "bn3_.*"),
                                                                      exclude=("bn3_2",)))
    assert sorted(copied) == sorted(f"{bn}/{leaf}" for bn in ("bn2_1", "bn3_1")
                                    for leaf in ("scale", "bias", "mean", "var"))


def test_a_classifier_of_another_class_count_is_left_fresh():
    fresh, source = variables("vgg_a", 0, num_classes=5, width=8), variables("vgg_a", 1, width=8)
    new, copied = initialize.copy_variables(fresh, source, init_section(), classes=(10, 5))
    assert "fc8/kernel" not in copied and "fc7/kernel" in copied
    np.testing.assert_array_equal(new["params"]["fc8"]["kernel"], fresh["params"]["fc8"]["kernel"])


def test_a_shape_mismatch_is_an_error_naming_the_path():
    fresh, source = variables("vgg_a", 0, width=16), variables("vgg_a", 1, width=8)
    with pytest.raises(
        ConfigError,
        match=r"init: conv1_1/bias of runs/source has shape \(8,\), but "
        r"conv1_1/bias of the new net has shape \(16,\)",
    ):
        initialize.copy_variables(fresh, source, init_section())


def test_a_pattern_that_names_nothing_is_an_error():
    fresh = variables("vgg_a", 0, width=8)
    with pytest.raises(ConfigError, match=r"init.include pattern 'conv9_1' names no variable"):
        initialize.copy_variables(fresh, fresh, init_section(include=("conv9_1",)))


def test_a_run_starts_from_another_run_and_a_resume_ignores_init(tmp_path, fashion_mnist_dir):
    data = {"dataset.name": "fashion_mnist", "dataset.source": "files",
            "dataset.data_dir": str(fashion_mnist_dir)}
    train.train_and_evaluate(
        configs.get_config("cifar_resnet20", tiny_overrides(**data)), tmp_path / "a"
    )
    config = configs.get_config("cifar_resnet20", tiny_overrides(
        **data, **{"init.workdir": str(tmp_path / "a"), "init.exclude": ("head",), "seed": 1,
                   "train.ema_decay": 0.5}))

    model = models.from_config(config.model, catalog.num_classes(config.dataset))
    fresh = state_lib.create(
        model,
        optim.direction(config),
        config,
        np.zeros((32, 32, 1), np.float32),
        sharding.make_mesh(),
    )
    started = initialize.from_checkpoint(fresh, config)
    source = checkpoint.load(tmp_path / "a")[1]
    where = from_where({"params": started.params, "batch_stats": started.batch_stats},
                       fresh.variables, source)
    assert {p for p, w in where.items() if w == "fresh"} == {"head/kernel", "head/bias"}
    # The parameter average starts from the copied parameters.
    jax.tree.map(np.testing.assert_array_equal, started.ema_params, started.params)

    config.train.steps = 6
    train.train_and_evaluate(config, tmp_path / "b")
    shutil.rmtree(tmp_path / "a")  # a resume reads its own checkpoint, never init.workdir
    config.train.steps = 12
    summary = train.train_and_evaluate(config, tmp_path / "b", allow_config_change=True)
    assert summary["step"] == 12


def test_classes_are_selected_and_renumbered(fashion_mnist_dir):
    config = configs.get_config("fashion_mnist_transfer:finetune", {
        "dataset.source": "files", "dataset.data_dir": str(fashion_mnist_dir)})
    splits = datasets.load(config.dataset)
    assert len(splits["train"]) == 1_000 and len(splits["test"]) == 5_000
    assert set(splits["train"].labels) == set(range(5)) and catalog.num_classes(config.dataset) == 5
    full = datasets.load(
        ml_collections.ConfigDict({**config.dataset.to_dict(), "classes": (), "train_examples": 0})
    )
    boots = full["test"].images[full["test"].labels == 9]  # ankle boots: label 4 of the selection
    np.testing.assert_array_equal(splits["test"].images[splits["test"].labels == 4], boots)
    with pytest.raises(
        ConfigError, match=r"dataset.classes must be distinct labels of fashion_mnist"
    ):
        datasets.selected_classes(
            ml_collections.ConfigDict({"name": "fashion_mnist", "classes": (3, 3)})
        )


def test_the_backbone_learns_at_a_fraction_of_the_head_s_rate():
    config = configs.get_config("finetune_resnet18_cifar10:smoke")
    params = {"head": {"kernel": jnp.ones(2)}, "stem_conv": {"kernel": jnp.ones(2)}}
    direction = optim.direction(config)
    updates, _ = direction.update(
        jax.tree.map(jnp.ones_like, params), direction.init(params), params
    )
    head, backbone = float(updates["head"]["kernel"][0]), float(updates["stem_conv"]["kernel"][0])
    assert backbone == pytest.approx(0.1 * head)
    assert isinstance(direction.init(params), optax.MultiTransformState)


def test_finetune_resnet18_smoke_runs_from_converted_weights(tmp_path):
    from tests.test_weights import save, torch_twin
    from experiments import conversion as convert_command

    save(torch_twin("resnet18"), tmp_path / "r18.safetensors")
    convert_command.write("resnet18", tmp_path / "r18.safetensors", tmp_path / "converted")
    config = configs.get_config("finetune_resnet18_cifar10:smoke",
                                {"init.workdir": str(tmp_path / "converted")})
    save_checkpoint = checkpoint.Checkpoints.save

    def save_and_wait(self, state):  # tfds's mock redirects file calls while it reads
        save_checkpoint(self, state)
        self.wait()

    with mock.patch.object(checkpoint.Checkpoints, "save", save_and_wait), \
            tfds.testing.mock_data(num_examples=64):
        summary = train.train_and_evaluate(config, tmp_path / "run")
    assert summary["step"] == 10 and np.isfinite(summary["train_loss"])
    converted = checkpoint.load(tmp_path / "converted")[1]["params"]
    tuned = checkpoint.load(tmp_path / "run")[1]["params"]
    assert tuned["head"]["kernel"].shape == (512, 10) and converted["head"]["kernel"].shape == (
        512,
        1000,
    )
    assert np.abs(tuned["stem_conv"]["kernel"] - converted["stem_conv"]["kernel"]).max() > 0


@pytest.mark.slow
def test_vgg16_smoke_starts_from_a_vgg_a_smoke_run(tmp_path):
    from tests.test_imagenet_training import run

    run("imagenet_vgg16:smoke", tmp_path / "a", **{"model.name": "vgg_a"})
    summary = run("imagenet_vgg16:smoke", tmp_path / "d", **{"init.workdir": str(tmp_path / "a")})
    assert summary["step"] == 6 and np.isfinite(summary["train_loss"])
