"""ResNets and their plain counterparts for ImageNet (He et al. 2015, Table 1 and section 3.3).

The paper's Table 1 (224x224 input), one row per stage, blocks per stage at the right:

    layer    output   basic block (18, 34)   bottleneck (50, 101, 152)          18  34  50 101 152
    conv1    112x112  7x7, 64, stride 2
             56x56    3x3 max pool, stride 2
    conv2_x  56x56    [3x3, 64;  3x3, 64]    [1x1, 64;  3x3, 64;  1x1, 256]      2   3   3   3   3
    conv3_x  28x28    [3x3, 128; 3x3, 128]   [1x1, 128; 3x3, 128; 1x1, 512]      2   4   4   4   8
    conv4_x  14x14    [3x3, 256; 3x3, 256]   [1x1, 256; 3x3, 256; 1x1, 1024]     2   6   6  23  36
    conv5_x  7x7      [3x3, 512; 3x3, 512]   [1x1, 512; 3x3, 512; 1x1, 2048]     2   3   3   3   3
             1x1      global average pool, 1000-d fc
    multiply-adds (x 10^9)                                                     1.8 3.6 3.8 7.6 11.3

Recomputed from the layer specs (convolutions + fc, option B, 224x224): 1.81 / 3.66 / 3.86 /
7.57 / 11.28 G with the bottleneck's stride on its first 1x1 (the paper, the default here);
4.09 / 7.80 / 11.51 G for 50 / 101 / 152 with it on the 3x3 (v1.5).

BN follows every convolution (section 3.4). The first block of conv3_x..conv5_x downsamples with
stride 2. A ResNet adds one shortcut per block; a plain net has none (Table 2). Shortcut options
(section 3.3): A is the identity, zero-padded where the width grows (no parameters); B projects
with a 1x1 convolution + BN where the shape changes (the default, torchvision's choice); C
projects in every block. With option B the parameter counts equal torchvision's. Table 2's
ResNet-18/34 use option A and so have exactly the parameters of plain-18/34 (section 4.1:
11,515,688 and 21,623,848); Table 3 compares A, B and C on ResNet-34, and the bottleneck nets
use B.

Convolutions pad k // 2 on each side (as the original Caffe models and torchvision do; 'SAME'
would pad a stride-2 3x3 convolution only on the right/bottom) and the 3x3/2 max pool pads 1
on each side (224 -> 112 -> 56), as torchvision and fb.resnet.torch do, its window i centred
on conv1's pixel 2i. The authors' Caffe models pool without padding, rounding the map size up
(ceil mode): the same 56x56 map, but window i covers pixels 2i..2i+2 ('SAME', padding 0 and
1), one pixel to the right; converted torchvision weights expect the windows used here.

The bottleneck downsamples in its first 1x1 convolution, as in the paper; `stride_on_1x1=False`
moves the stride to the 3x3 convolution, torchvision's "ResNet v1.5"
(same parameters, 6% more multiply-adds for ResNet-50, reported about 0.5% better top-1),
with which torchvision's weights, converted, compute the same function.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ConfigError
from cnn_jax.models import layers
from cnn_jax.models.residual import SHORTCUT_OPTIONS, BasicBlock, Shortcut, add_shortcut

# Table 1: blocks in conv2_x..conv5_x and the block type, per depth.
STAGE_BLOCKS = {
    18: ((2, 2, 2, 2), "basic"),
    34: ((3, 4, 6, 3), "basic"),
    50: ((3, 4, 6, 3), "bottleneck"),
    101: ((3, 4, 23, 3), "bottleneck"),
    152: ((3, 8, 36, 3), "bottleneck"),
}
STAGE_FILTERS = (64, 128, 256, 512)  # a bottleneck block outputs 4x these
STAGE_STRIDES = (1, 2, 2, 2)  # conv2_x follows the max pool at 56x56
BOTTLENECK_EXPANSION = 4


class Bottleneck(nn.Module):
    """1x1 (filters), 3x3 (filters), 1x1 (4 x filters), each with BN (Figure 5, right).

    The stride sits on the first 1x1 convolution (the paper) or, without `stride_on_1x1`, on
    the 3x3 one (torchvision's v1.5).
    """

    filters: int
    strides: int
    residual: bool
    shortcut: str
    conv: layers.ModuleDef
    norm: layers.ModuleDef
    act: Callable = nn.relu
    stride_on_1x1: bool = True

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        strides_1x1, strides_3x3 = (self.strides, 1) if self.stride_on_1x1 else (1, self.strides)
        y = self.conv(self.filters, (1, 1), strides=strides_1x1)(x)
        y = self.act(self.norm()(y))
        y = self.conv(self.filters, (3, 3), strides=strides_3x3)(y)
        y = self.act(self.norm()(y))
        out = self.filters * BOTTLENECK_EXPANSION
        y = self.norm()(self.conv(out, (1, 1))(y))
        if self.residual:
            y = add_shortcut(
                self, y, Shortcut(out, self.strides, self.shortcut, self.conv, self.norm)(x)
            )
        return self.act(y)


class ResNet(nn.Module):
    """An ImageNet ResNet (residual=True) or plain net (residual=False) of Table 1.

    Attributes:
      depth: 18, 34 (basic blocks), 50, 101 or 152 (bottleneck blocks).
      num_classes: outputs of the final dense layer.
      residual: add the shortcuts (ResNet) or not (plain net).
      shortcut: "A", "B" or "C" (section 3.3); ignored by plain nets.
      stride_on_1x1: bottleneck nets only: downsample in the first 1x1 convolution (the paper,
        the default) rather than in the 3x3 one (torchvision's v1.5).
      dtype: computation dtype; parameters and BN statistics stay float32.
      conv, act: the convolution module and the activation (flax's Conv and relu).
    """

    depth: int
    num_classes: int = 1000
    residual: bool = True
    shortcut: str = "B"
    stride_on_1x1: bool = True
    dtype: Any = jnp.float32
    conv: layers.ModuleDef = nn.Conv
    act: Callable = nn.relu

    def __post_init__(self) -> None:
        if self.depth not in STAGE_BLOCKS:
            raise ConfigError(
                f"ImageNet ResNets have depth {', '.join(map(str, STAGE_BLOCKS))} (Table 1); "
                f"depth {self.depth} is not one of them."
            )
        if self.shortcut not in SHORTCUT_OPTIONS:
            raise ConfigError(f"shortcut must be one of {SHORTCUT_OPTIONS}, got {self.shortcut!r}.")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        conv = layers.conv(self.dtype, self.conv)
        norm = layers.batch_norm(train, self.dtype)
        stage_blocks, kind = STAGE_BLOCKS[self.depth]
        block = BasicBlock
        if kind == "bottleneck":
            block = functools.partial(Bottleneck, stride_on_1x1=self.stride_on_1x1)

        x = conv(64, (7, 7), strides=2, name="stem_conv")(x.astype(self.dtype))  # conv1
        x = self.act(norm(name="stem_bn")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for stage, (n, filters, strides) in enumerate(
            zip(stage_blocks, STAGE_FILTERS, STAGE_STRIDES)
        ):
            for i in range(n):
                x = block(
                    filters=filters,
                    strides=strides if i == 0 else 1,
                    residual=self.residual,
                    shortcut=self.shortcut,
                    conv=conv,
                    norm=norm,
                    act=self.act,
                    name=f"stage{stage + 1}_block{i + 1}",  # conv{stage + 2}_x
                )(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)


MODELS = {
    **{f"resnet{depth}": functools.partial(ResNet, depth=depth) for depth in STAGE_BLOCKS},
    # Table 2's plain nets; with option A their ResNets have exactly their parameters.
    **{
        f"plain{depth}": functools.partial(ResNet, depth=depth, residual=False)
        for depth in (18, 34)
    },
}
