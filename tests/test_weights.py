"""torchvision and timm weights through `experiments.convert`: the real PyTorch nets with random
weights and random BatchNorm statistics, saved to a file, converted and loaded back with
`checkpoint.load`, compute the same logits (and ResNet-50 the same feature maps, GoogLeNet the
same auxiliary logits) in inference mode."""

import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
import safetensors.numpy
import tensorflow_datasets as tfds
import timm
import torch
import torchvision

from cnn_jax.errors import CheckpointError, ConfigError
from cnn_jax.models import googlenet_torchvision, layers
from cnn_jax.training import checkpoint, evaluation
from cnn_jax.weights import convert
from experiments import conversion as convert_command
from tests.conftest import ROOT

# Zoo name -> input size of the test (the smallest each net takes, for speed).
FAST = {"resnet18": 64, "resnet50": 64, "vgg11": 32, "vgg11_bn": 32, "alexnet_owt": 64,
        "googlenet_torchvision": 64, "inception_v4_released": 75, "inception_resnet_v2": 75}
SLOW = {"resnet34": 64, "resnet101": 64, "resnet152": 64, "vgg13": 32, "vgg13_bn": 32,
        "vgg16": 32, "vgg16_bn": 32, "vgg19": 32, "vgg19_bn": 32}


def torch_twin(name: str) -> torch.nn.Module:
    """The PyTorch net of zoo net `name` with random weights and BatchNorm statistics, in eval
    mode."""
    twin = convert.source(name)
    torch.manual_seed(0)
    if twin.library == "timm":
        net = timm.create_model(twin.name, pretrained=False)
    elif twin.name == "googlenet":  # as torchvision builds it for its ImageNet weights
        net = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True,
                                           init_weights=True)
    else:
        net = getattr(torchvision.models, twin.name)(weights=None)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return net.eval()


def save(net: torch.nn.Module, path) -> dict[str, np.ndarray]:
    """Writes the state dict as .safetensors (or .pth) and returns it as numpy."""
    tensors = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    if str(path).endswith(".pth"):
        torch.save(net.state_dict(), path)
    else:
        safetensors.numpy.save_file(tensors, str(path))
    return tensors


def converted(name: str, tmp_path, suffix: str = ".safetensors"):
    """(torch net, our model, our variables) after converting through the command."""
    net = torch_twin(name)
    save(net, tmp_path / f"{name}{suffix}")
    convert_command.write(name, tmp_path / f"{name}{suffix}", tmp_path / name)
    model, variables, _ = checkpoint.load(tmp_path / name)
    return net, model, variables


def images(size: int) -> np.ndarray:
    return np.random.RandomState(1).randn(2, size, size, 3).astype(np.float32)


def torch_logits(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()


def check_same_logits(name: str, size: int, tmp_path, suffix: str = ".safetensors") -> None:
    net, model, variables = converted(name, tmp_path, suffix)
    x = images(size)
    expected = torch_logits(net, x)
    ours = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x))
    difference = np.abs(ours - expected).max()
    print(
        f"{name}: max |logit difference| {difference:.3g} "
        f"(logits up to {np.abs(expected).max():.3g})"
    )
    assert difference < 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("name", FAST)
def test_converted_weights_give_the_same_logits(name, tmp_path):
    check_same_logits(name, FAST[name], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_converted_weights_give_the_same_logits_deeper_nets(name, tmp_path):
    check_same_logits(name, SLOW[name], tmp_path)


def test_every_converter_is_tested():
    assert sorted(FAST | SLOW) == convert.names()


def test_pth_files_convert_too(tmp_path):
    check_same_logits("resnet18", 64, tmp_path, suffix=".pth")


def test_resnet50_feature_maps_match_after_every_stage(tmp_path):
    net, model, variables = converted("resnet50", tmp_path)
    x = images(64)
    maps = {}
    for stage in range(1, 5):
        getattr(net, f"layer{stage}").register_forward_hook(
            lambda module, args, out, stage=stage: maps.__setitem__(stage, out.numpy()))
    torch_logits(net, x)
    last_blocks = {f"stage{s}_block{n}": s for s, n in zip(range(1, 5), (3, 4, 6, 3))}
    _, state = model.apply(variables, x, train=False, mutable=["intermediates"],
                           capture_intermediates=lambda m, _: m.name in last_blocks)
    for block, stage in last_blocks.items():
        ours = np.asarray(state["intermediates"][block]["__call__"][0])
        expected = maps[stage].transpose(0, 2, 3, 1)
        assert ours.shape == expected.shape
        np.testing.assert_allclose(ours, expected, atol=1e-4 * np.abs(expected).max())


def test_googlenet_auxiliary_classifiers_match(tmp_path):
    net, model, variables = converted("googlenet_torchvision", tmp_path)
    x = images(96)
    inputs = {}
    for block in ("inception4a", "inception4d"):
        getattr(net, block).register_forward_hook(
            lambda module, args, out, block=block: inputs.__setitem__(block, out))
    torch_logits(net, x)
    _, state = model.apply(
        variables,
        x,
        train=False,
        mutable=["intermediates"],
        capture_intermediates=lambda m, _: m.name in ("inception_4a", "inception_4d"),
    )
    norm = layers.batch_norm(False, epsilon=googlenet_torchvision.BN_EPSILON)
    conv = lambda *a, **k: googlenet_torchvision.inception_blocks.BasicConv(*a, norm=norm, **k)
    for ours_in, theirs, head in (("inception_4a", "inception4a", "aux1"),
                                  ("inception_4d", "inception4d", "aux2")):
        with torch.no_grad():
            expected = getattr(net, head)(inputs[theirs]).numpy()
        aux = googlenet_torchvision.AuxClassifier(1000, conv)
        scope = f"{head}_classifier"
        ours = aux.apply({c: variables[c][scope] for c in ("params", "batch_stats")},
                         state["intermediates"][ours_in]["__call__"][0], False)
        assert np.abs(np.asarray(ours) - expected).max() < 1e-4 * np.abs(expected).max()


def test_safetensors_convert_without_torch(tmp_path):
    tensors = save(torch_twin("resnet18"), tmp_path / "resnet18.safetensors")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # import torch fails as where it is not installed
        from experiments import conversion
        conversion.write(
            "resnet18", {str(tmp_path / "resnet18.safetensors")!r}, {str(tmp_path / "w")!r}
        )
        assert sys.modules["torch"] is None
    """)
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True)
    variables = checkpoint.load(tmp_path / "w")[1]
    np.testing.assert_array_equal(variables["params"]["head"]["kernel"], tensors["fc.weight"].T)
    np.testing.assert_array_equal(
        variables["batch_stats"]["stem_bn"]["var"], tensors["bn1.running_var"]
    )


@pytest.fixture(scope="module")
def resnet18_tensors():
    return {k: v.numpy().copy() for k, v in torch_twin("resnet18").state_dict().items()}


def test_a_state_dict_of_another_architecture_is_refused(resnet18_tensors):
    with pytest.raises(
        CheckpointError,
        match=r"not those of torchvision.s vgg11: 22 of its 22 tensors are missing "
        r"\(e\.g\. features\.0\.bias\)",
    ):
        convert.convert("vgg11", resnet18_tensors)


def test_a_missing_key_is_named(resnet18_tensors):
    tensors = {
        k: v for k, v in resnet18_tensors.items() if k != "layer2.0.downsample.1.running_var"
    }
    with pytest.raises(CheckpointError, match=r"lack layer2\.0\.downsample\.1\.running_var"):
        convert.convert("resnet18", tensors)


def test_an_extra_key_is_named(resnet18_tensors):
    tensors = resnet18_tensors | {"layer5.0.conv1.weight": np.zeros((8, 8, 3, 3), np.float32)}
    with pytest.raises(
        CheckpointError, match=r"hold layer5\.0\.conv1\.weight \(8, 8, 3, 3\), which"
    ):
        convert.convert("resnet18", tensors)


def test_a_shape_that_does_not_fit_names_the_key_and_both_shapes(resnet18_tensors):
    tensors = resnet18_tensors | {"layer1.0.conv2.weight": np.zeros((64, 64, 5, 5), np.float32)}
    message = (r"layer1\.0\.conv2\.weight has shape \(64, 64, 5, 5\), but resnet18's "
               r"stage1_block1/Conv_1/kernel needs \(64, 64, 3, 3\)")
    with pytest.raises(CheckpointError, match=message):
        convert.convert("resnet18", tensors)


def test_a_head_of_another_class_count_is_a_shape_error(resnet18_tensors):
    tensors = resnet18_tensors | {
        "fc.weight": np.zeros((10, 512), np.float32),
        "fc.bias": np.zeros(10, np.float32),
    }
    with pytest.raises(
        CheckpointError,
        match=r"fc\.bias has shape \(10,\), but resnet18's head/bias needs \(1000,\)",
    ):
        convert.convert("resnet18", tensors)


def test_pickles_of_other_objects_are_not_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(2), "hook": subprocess.Popen}, path)
    with pytest.raises(
        CheckpointError, match=r"not a state dict that loads safely \(weights_only\)"
    ):
        convert_command.write("resnet18", path, tmp_path / "w")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("file, message", [
    ("weights.npz", r"neither \.safetensors nor \.pth/\.pt"),
    ("absent.safetensors", r"does not exist"),
    ("garbage.safetensors", r"not a readable safetensors file"),
])
def test_unreadable_files_are_refused(tmp_path, file, message):
    if file != "absent.safetensors":
        (tmp_path / file).write_bytes(b"not weights")
    with pytest.raises(CheckpointError, match=message):
        convert_command.write("resnet18", tmp_path / file, tmp_path / "w")


def test_the_command_says_one_sentence_and_exits_1(tmp_path, resnet18_tensors):
    tensors = {k: v for k, v in resnet18_tensors.items() if k != "fc.bias"}
    safetensors.numpy.save_file(tensors, str(tmp_path / "r18.safetensors"))
    result = subprocess.run(
        [sys.executable, "-m", "experiments.convert", "--model=resnet18",
         f"--weights={tmp_path / 'r18.safetensors'}", f"--workdir={tmp_path / 'w'}"],
        cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1]
        == "error: The weights lack fc.bias, which torchvision's resnet18 has."
    )
    unknown = subprocess.run([sys.executable, "-m", "experiments.convert", "--model=resnet99"],
                             cwd=ROOT, capture_output=True, text=True)
    assert unknown.returncode == 1 and "No converter for model 'resnet99'" in unknown.stderr


def test_config_json_states_the_preprocessing_and_evaluate_runs_on_mock_imagenet(tmp_path):
    net = torch_twin("resnet18")
    save(net, tmp_path / "r18.safetensors")
    convert_command.write("resnet18", tmp_path / "r18.safetensors", tmp_path / "w")
    config = checkpoint.read_config(tmp_path / "w")
    assert (
        config.model.name,
        config.dataset.name,
        config.augment.image_size,
        config.eval.resize,
    ) == ("resnet18", "imagenet2012", 224, 256)
    assert tuple(config.augment.mean_rgb) == (0.485, 0.456, 0.406)
    assert config.converted.library == "torchvision" and len(config.converted.sha256) == 64
    written = (tmp_path / "w" / "config.json").read_text()
    (tmp_path / "w" / "config.json").write_text(
        written.replace('"batch_size": 200', '"batch_size": 8')
    )
    with tfds.testing.mock_data(num_examples=8):
        step, results = evaluation.evaluate_workdir(tmp_path / "w")
    assert step == 0 and 0 <= results["val"]["error"] <= 100
    inception = convert_command.converted_config(
        "inception_v4_released", tmp_path / "r18.safetensors", "imagenet2012"
    )
    assert (
        tuple(inception.augment.stddev_rgb) == (0.5, 0.5, 0.5)
        and inception.augment.image_size == 299
    )


def test_unknown_names_list_the_convertible_ones():
    with pytest.raises(ConfigError, match=r"models with one: alexnet_owt \(torchvision alexnet\)"):
        convert.source("lenet5")
