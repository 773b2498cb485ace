"""Where each variable of a zoo net lives in a torchvision / timm state dict.

Each family maps a module path of ours (the names in the variables tree, e.g.
("stage1_block1", "Conv_0")) to the PyTorch module key ("layer1.0.conv1"); the leaf names
then map one to one (`LEAVES`). Every path of ours gets a key and every key of the file must
be used: nothing is matched by position or guessed from shapes.
"""

import dataclasses
import re
from typing import Callable

from cnn_jax.models import googlenet, inception_v4, vgg

# Flax leaf -> PyTorch parameter / buffer name.
LEAVES = {"kernel": "weight", "bias": "bias", "scale": "weight", "mean": "running_mean",
          "var": "running_var"}
IGNORED = ("num_batches_tracked",)  # BatchNorm's step counter: no variable of ours

TORCHVISION = {"mean_rgb": (0.485, 0.456, 0.406), "stddev_rgb": (0.229, 0.224, 0.225),
               "image_size": 224, "resize": 256}
INCEPTION = {"mean_rgb": (0.5, 0.5, 0.5), "stddev_rgb": (0.5, 0.5, 0.5), "image_size": 299}

ModulePath = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Source:
    """A zoo net's PyTorch twin: its library and name, how our modules map to its keys, the
    dense layers that read a flattened (C, H, W) map and its (H, W), the model attributes its
    weights need, and the input preprocessing they expect."""

    library: str
    name: str
    module_key: Callable[[ModulePath], str]
    flattened: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    overrides: dict[str, object] = dataclasses.field(default_factory=dict)
    preprocessing: dict[str, object] = dataclasses.field(default_factory=lambda: TORCHVISION)


class UnknownModule(KeyError):
    """A module path of ours that the family's mapping does not know."""


def _lookup(table: dict[str, str], name: str) -> str:
    if name not in table:
        raise UnknownModule(name)
    return table[name]


# ---- AlexNet (torchvision's alexnet = our alexnet_owt) ----

ALEXNET_OWT = {"conv1": "features.0", "conv2": "features.3", "conv3": "features.6",
               "conv4": "features.8", "conv5": "features.10", "fc6": "classifier.1",
               "fc7": "classifier.4", "fc8": "classifier.6"}


def alexnet_owt_key(path: ModulePath) -> str:
    return _lookup(ALEXNET_OWT, "/".join(path))


# ---- VGG (torchvision's vgg*, vgg*_bn) ----


def vgg_keys(config: str, batch_norm: bool) -> dict[str, str]:
    """torchvision's `features` indices: conv[, BN], ReLU per layer, one max pool per stage."""
    keys, index = {}, 0
    for stage, stage_layers in enumerate(vgg.CONFIGS[config], start=1):
        for number, _ in enumerate(stage_layers, start=1):
            keys[f"conv{stage}_{number}"] = f"features.{index}"
            if batch_norm:
                keys[f"bn{stage}_{number}"] = f"features.{index + 1}"
            index += 3 if batch_norm else 2
        index += 1
    return keys | {"fc6": "classifier.0", "fc7": "classifier.3", "fc8": "classifier.6"}


def vgg_key(config: str, batch_norm: bool) -> Callable[[ModulePath], str]:
    keys = vgg_keys(config, batch_norm)
    return lambda path: _lookup(keys, "/".join(path))


# ---- ResNet (torchvision's resnet*) ----

RESNET_TOP = {"stem_conv": "conv1", "stem_bn": "bn1", "head": "fc"}
RESNET_SHORTCUT = {"proj_conv": "downsample.0", "proj_bn": "downsample.1"}


def resnet_key(path: ModulePath) -> str:
    if len(path) == 1:
        return _lookup(RESNET_TOP, path[0])
    block = re.fullmatch(r"stage(\d+)_block(\d+)", path[0])
    layer = re.fullmatch(r"(Conv|BatchNorm)_(\d+)", path[1])
    if block is None:
        raise UnknownModule("/".join(path))
    prefix = f"layer{block[1]}.{int(block[2]) - 1}"
    if layer is not None and len(path) == 2:
        return f"{prefix}.{'conv' if layer[1] == 'Conv' else 'bn'}{int(layer[2]) + 1}"
    if path[1] == "Shortcut_0" and len(path) == 3:
        return f"{prefix}.{_lookup(RESNET_SHORTCUT, path[2])}"
    raise UnknownModule("/".join(path))


# ---- Inception branches: "branch<i>_<j>[a-h]" of ours ----


def branch_key(name: str, branches: tuple, first: int, flat_splits: bool = False) -> str:
    """A PyTorch Inception block's key for our branch layer `name`: a branch of one layer is
    `branch<i>`, a longer one an nn.Sequential `branch<i>.<j>` (counting pooling layers),
    numbered from `first`; with `flat_splits` (timm's Inception-C) a branch that ends in a
    split names its layers `branch<i>_<j>` and the split's `branch<i>_<j>a`."""
    match = re.fullmatch(r"branch(\d+)_(\d+)([a-h]?)", name)
    if match is None:
        raise UnknownModule(name)
    i, j, split = int(match[1]) - 1, int(match[2]) - 1, match[3]
    branch = branches[i]
    if flat_splits and isinstance(branch[-1], tuple):
        return f"branch{i + first}_{j}{split}"
    if len(branch) == 1:
        return f"branch{i + first}"
    return f"branch{i + first}.{j}"


def _conv_or_bn(path: ModulePath, at: int) -> str:
    """The BasicConv's own layer: both libraries call them `conv` and `bn` too."""
    if len(path) != at + 1 or path[at] not in ("conv", "bn"):
        raise UnknownModule("/".join(path))
    return path[at]


# ---- GoogLeNet (torchvision's googlenet = our googlenet_torchvision) ----

GOOGLENET_TOP = {"conv1": "conv1", "conv2_reduce": "conv2", "conv2": "conv3", "head": "fc"}
GOOGLENET_AUX = {"fc": "fc1", "head": "fc2"}


def googlenet_key(path: ModulePath) -> str:
    from cnn_jax.models.googlenet_torchvision import inception_module

    top = path[0]
    if top in ("conv1", "conv2_reduce", "conv2"):
        return f"{GOOGLENET_TOP[top]}.{_conv_or_bn(path, 1)}"
    if top == "head" and len(path) == 1:
        return "fc"
    aux = re.fullmatch(r"(aux\d)_classifier", top)
    if aux and len(path) >= 2:
        if path[1] == "conv":
            return f"{aux[1]}.conv.{_conv_or_bn(path, 2)}"
        return f"{aux[1]}.{_lookup(GOOGLENET_AUX, '/'.join(path[1:]))}"
    block = re.fullmatch(r"inception_(\d[a-e])", top)
    if block and block[1] in googlenet.INCEPTION and len(path) == 3:
        branches = inception_module(*googlenet.INCEPTION[block[1]])
        return f"inception{block[1]}.{branch_key(path[1], branches, 1)}.{_conv_or_bn(path, 2)}"
    raise UnknownModule("/".join(path))


# ---- Inception-v4 and Inception-ResNet-v2 (timm's ports of the released nets) ----


def _blocks(layout: inception_v4.Layout) -> dict[str, inception_v4.Block]:
    """Our block names in a layout (as `inception_v4.Inception` names them) -> blocks."""
    return {
        (stage if len(blocks) == 1 else f"{stage}{i}"): block
        for stage, blocks in layout
        for i, block in enumerate(blocks, 1)
    }


def _stem_layer(path: ModulePath) -> int:
    """j of our first stem sequence's layer `branch1_<j>`."""
    match = re.fullmatch(r"branch1_(\d+)", path[1])
    if match is None:
        raise UnknownModule("/".join(path))
    return int(match[1])


V4_BLOCKS = _blocks(inception_v4.INCEPTION_V4_RELEASED)
V4_SINGLE_CONV = ("stem2", "stem4")  # timm's Mixed3a / Mixed5a: one conv called `conv`


def inception_v4_key(path: ModulePath) -> str:
    """timm's `features.<n>`: the stem's three convolutions, then one entry per block."""
    if path == ("head",):
        return "last_linear"
    names = list(V4_BLOCKS)
    if path[0] not in V4_BLOCKS or len(path) != 3:
        raise UnknownModule("/".join(path))
    block = V4_BLOCKS[path[0]]
    if path[0] == "stem1":  # our first sequence = timm's features.0-2
        return f"features.{_stem_layer(path) - 1}.{_conv_or_bn(path, 2)}"
    index = names.index(path[0]) + 2
    if path[0] in V4_SINGLE_CONV:
        inner = "conv"
    else:
        inner = branch_key(path[1], block.branches, 0, flat_splits=True)
    return f"features.{index}.{inner}.{_conv_or_bn(path, 2)}"


IRV2_BLOCKS = _blocks(inception_v4.INCEPTION_RESNET_V2)
IRV2_STEM = {1: "conv2d_1a", 2: "conv2d_2a", 3: "conv2d_2b", 5: "conv2d_3b", 6: "conv2d_4a"}
IRV2_STAGES = {"inception_resnet_a": "repeat", "inception_resnet_b": "repeat_1",
               "inception_resnet_c": "repeat_2"}
IRV2_MIXED = {"stem3": "mixed_5b", "reduction_a": "mixed_6a", "reduction_b": "mixed_7a"}
IRV2_LAST_C = "inception_resnet_c10"  # timm's `block8`: the linear C block


def inception_resnet_v2_key(path: ModulePath) -> str:
    top = path[0]
    if path == ("head",):
        return "classif"
    if top not in IRV2_BLOCKS:
        raise UnknownModule("/".join(path))
    if top == "stem1":
        layer = _stem_layer(path)
        if layer not in IRV2_STEM:
            raise UnknownModule("/".join(path))
        return f"{IRV2_STEM[layer]}.{_conv_or_bn(path, 2)}"
    if top == "conv_7b":
        return f"conv2d_7b.{_conv_or_bn(path, 2)}"
    stage = re.fullmatch(r"(inception_resnet_[abc])(\d+)", top)
    if top == IRV2_LAST_C:
        prefix = "block8"
    elif stage:
        prefix = f"{IRV2_STAGES[stage[1]]}.{int(stage[2]) - 1}"
    else:
        prefix = IRV2_MIXED.get(top)
        if prefix is None:
            raise UnknownModule("/".join(path))
    if path[1:] == ("expand",):
        return f"{prefix}.conv2d"
    branch = branch_key(path[1], IRV2_BLOCKS[top].branches, 0)
    return f"{prefix}.{branch}.{_conv_or_bn(path, 2)}"


# ---- The table: zoo name -> its PyTorch twin ----

SOURCES = {
    "alexnet_owt": Source("torchvision", "alexnet", alexnet_owt_key, {"fc6": (6, 6)}),
    **{
        f"vgg{depth}{suffix}": Source(
            "torchvision", f"vgg{depth}{suffix}", vgg_key(config, bool(suffix)), {"fc6": (7, 7)}
        )
        for depth, config in ((11, "A"), (13, "B"), (16, "D"), (19, "E"))
        for suffix in ("", "_bn")
    },
    **{
        f"resnet{depth}": Source(
            "torchvision", f"resnet{depth}", resnet_key,
            overrides={"stride_on_1x1": False} if depth >= 50 else {},
        )
        for depth in (18, 34, 50, 101, 152)
    },
    "googlenet_torchvision": Source(
        "torchvision", "googlenet", googlenet_key,
        {"aux1_classifier/fc": (4, 4), "aux2_classifier/fc": (4, 4)},
        overrides={"transform_input": True},
    ),
    "inception_v4_released": Source(
        "timm", "inception_v4", inception_v4_key, preprocessing=INCEPTION | {"resize": 341}
    ),
    "inception_resnet_v2": Source(
        "timm", "inception_resnet_v2", inception_resnet_v2_key,
        preprocessing=INCEPTION | {"resize": 333},
    ),
}
