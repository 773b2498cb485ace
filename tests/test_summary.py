"""Layer tables: the multiply-adds and parameters of the papers' tables, from abstract shapes."""

import pathlib
import subprocess
import sys

import pytest

from cnn_jax import models
from cnn_jax.models import published, summary

ROOT = pathlib.Path(__file__).parent.parent
IMAGENET = (224, 224, 3)
CIFAR = (32, 32, 3)


def multiply_adds(name, shape, **overrides):
    return summary.totals(summary.layer_table(models.create(name, **overrides), shape))[1]


def resnet_by_hand(blocks, bottleneck, stride_on_1x1=True):
    """Table 1 with option B: conv1, the blocks (projection where the shape changes), fc."""
    total = 112 * 112 * 64 * 7 * 7 * 3
    size, c_in = 56, 64
    for stage, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512))):
        for i in range(n):
            stride = 2 if stage and i == 0 else 1
            out = size // stride
            if bottleneck:
                c_out = 4 * width
                first = out if stride_on_1x1 else size  # the map the first 1x1 produces
                total += first**2 * c_in * width + out**2 * 9 * width * width
                total += out**2 * width * c_out
            else:
                c_out = width
                total += out**2 * 9 * c_in * width + out**2 * 9 * width * width
            if stride != 1 or c_in != c_out:
                total += out**2 * c_in * c_out
            size, c_in = out, c_out
    return total + c_in * 1000


@pytest.mark.parametrize(
    "depth, blocks, bottleneck, paper",
    [
        (18, (2, 2, 2, 2), False, 1.8e9),
        (34, (3, 4, 6, 3), False, 3.6e9),
        (50, (3, 4, 6, 3), True, 3.8e9),
        (101, (3, 4, 23, 3), True, 7.6e9),
        (152, (3, 8, 36, 3), True, 11.3e9),
    ],
)
def test_imagenet_resnets_match_table_1(depth, blocks, bottleneck, paper):
    total = multiply_adds(f"resnet{depth}", IMAGENET)
    assert total == resnet_by_hand(blocks, bottleneck)
    assert total == pytest.approx(paper, rel=0.05)


def test_resnet50_stride_placement():
    paper = multiply_adds("resnet50", IMAGENET)  # the default: stride on the first 1x1
    v1_5 = multiply_adds("resnet50", IMAGENET, stride_on_1x1=False)
    assert paper == resnet_by_hand((3, 4, 6, 3), True) == 3_857_973_248  # 3.86 G
    assert v1_5 == resnet_by_hand((3, 4, 6, 3), True, stride_on_1x1=False) == 4_089_184_256


@pytest.mark.parametrize(
    "depth, reference", [(20, 40.6e6), (32, 68.9e6), (44, 97.2e6), (56, 125.5e6), (110, 252.9e6)]
)
def test_cifar_resnets_match_the_reference_costs(depth, reference):
    n = (depth - 2) // 6
    # A 3x3 conv at 32x32x16 -> 16 costs as much as one at 16x16x32 -> 32 or 8x8x64 -> 64; the
    # first conv of stages 2 and 3 (stride 2, width doubling) costs half of that.
    conv = 32 * 32 * 16 * 9 * 16
    stages = 2 * n * conv + 2 * ((2 * n - 1) * conv + conv // 2)
    by_hand = 32 * 32 * 16 * 9 * 3 + stages + 64 * 10
    total = multiply_adds(f"cifar_resnet{depth}", CIFAR)
    assert total == by_hand
    assert total == pytest.approx(reference, rel=0.01)


def test_scanned_cifar_net_counts_every_block():
    rows = summary.layer_table(models.create("cifar_resnet56", scan=True), CIFAR)
    assert summary.totals(rows) == (853_018, 125_485_696)


def test_vgg16():
    convs = [  # (map size, c_in, c_out) of the 13 3x3 convs of configuration D
        (224, 3, 64), (224, 64, 64), (112, 64, 128), (112, 128, 128),
        (56, 128, 256), (56, 256, 256), (56, 256, 256),
        (28, 256, 512), (28, 512, 512), (28, 512, 512), (14, 512, 512), (14, 512, 512),
        (14, 512, 512),
    ]  # fmt: skip
    by_hand = sum(s * s * 9 * c_in * c_out for s, c_in, c_out in convs)
    by_hand += 7 * 7 * 512 * 4096 + 4096 * 4096 + 4096 * 1000
    assert by_hand == 15_470_264_320
    assert multiply_adds("vgg16", IMAGENET) == by_hand


def test_alexnet_with_two_towers():
    # conv1 55^2*96*11*11*3, conv2 27^2*256*5*5*48, conv3 13^2*384*3*3*256,
    # conv4 13^2*384*3*3*192, conv5 13^2*256*3*3*192, fc6-8 9216*4096 + 4096*4096 + 4096*1000.
    by_hand = (
        105_415_200 + 223_948_800 + 149_520_384 + 112_140_288 + 74_760_192
        + 37_748_736 + 16_777_216 + 4_096_000
    )  # fmt: skip
    assert by_hand == 724_406_816  # about 0.72 G
    assert multiply_adds("alexnet", (227, 227, 3)) == by_hand


@pytest.mark.parametrize(
    "name, shape",
    [("resnet50", IMAGENET), ("vgg16_bn", IMAGENET), ("cifar_resnet20", CIFAR),
     ("lenet5", (32, 32, 1)), ("inception_v4", (299, 299, 3))],
)  # fmt: skip
def test_params_total_equals_the_variables(name, shape):
    model = models.create(name)
    params, _ = summary.totals(summary.layer_table(model, shape))
    assert params == summary.param_count(model, shape)


def test_googlenet_table_is_the_inference_net():
    model = models.create("googlenet")
    rows = summary.layer_table(model, IMAGENET)
    assert not any(r.path.startswith("aux") for r in rows)
    assert summary.totals(rows)[0] == 6_998_552
    assert summary.param_count(model, IMAGENET) == 13_378_280  # with the auxiliary heads
    table = summary.format_table(rows, "googlenet", IMAGENET, 13_378_280)
    assert "6,379,728" in table.splitlines()[-2]


def test_rows_and_table():
    rows = summary.layer_table(models.create("resnet50"), IMAGENET, batch_size=2)
    stem = rows[0]
    assert stem == summary.Layer("stem_conv", "conv", (2, 112, 112, 64), 9_408, 118_013_952)
    assert rows[1].kind == "batch_norm" and rows[1].multiply_adds == 0
    assert rows[-1] == summary.Layer("head", "dense", (2, 1000), 2_049_000, 2_048_000)
    lines = summary.format_table(rows, "resnet50").splitlines()
    assert lines[3].split() == ["stem_conv", "112x112x64", "9,408", "118.0M"]
    assert lines[-1].split() == ["total", "25,557,032", "3.86G"]


def summary_cli(*args):
    command = [sys.executable, "-m", "experiments.summary", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cli_prints_the_table():
    result = summary_cli("--model=resnet50")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("resnet50 at 224x224x3")
    assert "stage4_block3/Conv_2" in result.stdout
    assert lines[-1].split() == ["total", "25,557,032", "3.86G"]


def test_cli_sets_the_naive_inception_module_next_to_the_one_with_reductions():
    result = summary_cli("--inception_modules")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("naive Inception module at 28x28x256")
    rows = {line.split()[0]: line.split() for line in lines[-3:-1]}
    assert rows["naive"][-3:] == ["28x28x672", "1,089,952", "854.2M"]
    assert rows["reductions"][-3:] == ["28x28x480", "388,736", "304.3M"]  # Table 1: 380K, 304M


def test_cli_needs_a_model_or_the_inception_modules():
    result = summary_cli()
    assert result.returncode == 1 and not result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("error: Give --model=NAME")


def test_cli_unknown_model():
    result = summary_cli("--model=resnet51")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and not result.stdout
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: Unknown model 'resnet51'")


@pytest.mark.parametrize("name", sorted(published.NUMBERS))
def test_every_published_count_is_met(name):
    """Our inference nets against the published numbers. The papers round ("about 60M"), and
    GoogLeNet's Table 1 sums to 6.8M while its channel counts give 7.0M, and its 1.5G is the
    design budget, not a count (1.58G): 3% on parameters, 6% on multiply-adds."""
    numbers = published.NUMBERS[name]
    params, macs = summary.totals(
        summary.layer_table(models.create(name), models.input_shape(name))
    )
    if numbers.params is not None:
        assert params == pytest.approx(numbers.params, rel=0.03)
    if numbers.multiply_adds is not None:
        assert macs == pytest.approx(numbers.multiply_adds, rel=0.06)


@pytest.mark.parametrize("resnet, plain", sorted(published.OPTION_A_TWINS.items()))
def test_table_2_option_a_resnets_have_the_plain_nets_parameters(resnet, plain):
    """Section 4.1: Table 2's ResNet-18/34 (option A) add no parameter to plain-18/34; option B
    (torchvision's count) adds the three 1x1 projections + BN."""
    count = lambda name, **overrides: summary.param_count(
        models.create(name, **overrides), IMAGENET
    )
    option_a = count(resnet, shortcut="A")
    assert option_a == count(plain) == published.NUMBERS[plain].params
    projections = sum(c * 2 * c + 2 * 2 * c for c in (64, 128, 256))  # 64->128, 128->256, 256->512
    assert count(resnet, shortcut="B") == option_a + projections == published.NUMBERS[resnet].params
