"""Config resolution: --config=NAME, a path, NAME:ARGS and --config.a.b=value overrides."""

import pytest

from cnn_jax.errors import ConfigError
from experiments import configs

PAPER_CONFIGS = [f"cifar_resnet{d}" for d in (20, 32, 44, 56, 110, 1202)] + [
    f"cifar_plain{d}" for d in (20, 32, 44, 56, 110)
]


def test_every_paper_config_is_named():
    assert set(PAPER_CONFIGS) <= set(configs.names())
    assert not any(name.startswith("_") for name in configs.names())


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_config_follows_the_paper_and_documents_its_command(name):
    config = configs.get_config(name)
    assert config.model.name == name and config.name == name
    assert (config.train.batch_size, config.train.steps) == (128, 64_000)
    assert (config.optimizer.lr, config.optimizer.momentum, config.optimizer.weight_decay) == (
        0.1,
        0.9,
        1e-4,
    )
    assert tuple(config.schedule.boundaries) == (32_000, 48_000) and config.schedule.factor == 0.1
    assert config.model.shortcut == "A" and config.model.width == 16
    assert (config.augment.crop_padding, config.augment.flip) == (4, True)
    depth = int(name.removeprefix("cifar_resnet").removeprefix("cifar_plain"))
    assert config.schedule.warmup_steps == (400 if depth >= 110 else 0)
    doc = (configs.DIRECTORY / f"{name}.py").read_text()
    assert f"python -m experiments.degradation --config={name}" in doc


def test_smoke_argument_shrinks_the_run():
    config = configs.get_config("cifar_plain56:smoke")
    assert config.name == "cifar_plain56_smoke"
    assert config.train.steps <= 200 and config.eval.max_examples > 0
    assert max(config.schedule.boundaries) < config.train.steps


def test_overrides_use_the_command_line_syntax():
    config = configs.get_config(
        "cifar_resnet20",
        {"train.steps": 500, "dataset.name": "fashion_mnist", "schedule.boundaries": (100, 200)},
    )
    assert config.train.steps == 500 and config.dataset.name == "fashion_mnist"
    assert tuple(config.schedule.boundaries) == (100, 200)


def test_a_path_works_like_a_name(tmp_path):
    path = configs.DIRECTORY / "cifar_resnet32.py"
    assert configs.get_config(f"{path}:smoke").model.name == "cifar_resnet32"
    assert configs.resolve("cifar_resnet32:smoke") == f"{path}:smoke"


def test_argv_rewriting_keeps_other_flags():
    argv = ["prog", "--config=cifar_plain20:smoke", "--config.train.steps=3", "--workdir=/tmp/x"]
    resolved = configs.resolve_argv(argv)
    assert resolved[1] == f"--config={configs.DIRECTORY / 'cifar_plain20.py'}:smoke"
    assert resolved[2:] == argv[2:]


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(
        ConfigError, match="Unknown config 'cifar_resnet21'; known configs: .*cifar_plain20"
    ):
        configs.get_config("cifar_resnet21")
    with pytest.raises(ConfigError, match="Unknown config '_cifar'"):
        configs.resolve("_cifar")


def test_unknown_argument_and_unknown_field_are_config_errors():
    with pytest.raises(ConfigError, match="Unknown config argument 'smok'"):
        configs.get_config("cifar_resnet20:smok")
    with pytest.raises(ConfigError):
        configs.get_config("cifar_resnet20", {"train.stepz": 5})



@pytest.mark.parametrize(
    "name, shortcut",
    [("imagenet_resnet18", "A"), ("imagenet_resnet34", "A"), ("imagenet_resnet50", "B")],
)
def test_imagenet_resnets_use_the_papers_shortcut_option(name, shortcut):
    """Table 2's ResNet-18/34 are option A, the bottleneck nets option B (section 4.1)."""
    assert configs.get_config(name).model.shortcut == shortcut
    assert configs.get_config(name, {"model.shortcut": "B"}).model.shortcut == "B"


@pytest.mark.parametrize(
    "name, normalize",
    [("imagenet_alexnet", "subtract_mean"), ("imagenet_vgg_a", "subtract_mean"),
     ("imagenet_vgg16", "subtract_mean"), ("imagenet_googlenet", "standardize"),
     ("imagenet_resnet50", "standardize"), ("imagenet_inception_v4", "standardize")],
)
def test_imagenet_recipes_normalize_as_their_papers(name, normalize):
    """AlexNet (section 2) and VGG (section 2.1) fed 0-255 pixels minus the training set's mean;
    the later nets get standardized inputs."""
    assert configs.get_config(name).augment.normalize == normalize


def test_vgg_a_recipe_is_table_3s_net_a():
    config = configs.get_config("imagenet_vgg_a")
    assert (config.model.name, config.model.initialization) == ("vgg_a", "gaussian")
    assert tuple(config.augment.scale_range) == (256, 256)  # S = 256, not jittered
    assert configs.get_config("imagenet_vgg16").model.initialization == "glorot"
