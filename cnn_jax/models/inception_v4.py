"""Inception-v4 and Inception-ResNet (Szegedy et al. 2016, "Inception-v4, Inception-ResNet and
the Impact of Residual Connections on Learning").

`inception_v4_released` and `inception_resnet_v2` are the nets Google released (TF-slim, and
timm's ports of them, whose weights `experiments.convert` reads): their blocks concatenate
the branches in the release's order (the pooling branch last), Inception-v4's release turns
some 1x7 / 7x1 and 1x3 / 3x1 pairs the other way round from Figures 3, 5 and 6, and their
BatchNorm epsilon is TF-slim's 1e-3.

Each net is a layout: a sequence of named stages, each a sequence of blocks; a block is a set
of branches written as in the paper's figures (see `inception_blocks` for the notation: "3x3/2
V 384" is a 3x3 convolution with 384 filters, stride 2, VALID padding). Every convolution is
followed by BN and ReLU, except the 1x1 linear filter-expansion of an Inception-ResNet block
(bias, no BN), whose output is scaled and added to the block's input, then ReLU. The head is
global average pooling, dropout (keep 0.8) and a linear layer. Input 299x299x3; the grids are
35x35 (A), 17x17 (B) and 8x8 (C).

Padding: every stride-2 convolution and max pool is VALID, marked "V" in the figures
(the stem's 299 -> 149 -> 147 -> 73 -> 71 -> 35, then 17 and 8), as in Google's TF-slim
nets; the other
convolutions and the stride-1 average pools keep the map size, padding (k - 1) / 2 on each side
of an odd kernel (for 1x7 and 7x1, 3 along the long axis only).

Residual scaling: 0.17 / 0.10 / 0.20 for the A / B / C blocks, within the paper's 0.1-0.3
(section 3.3) and as in Google's released TF-slim Inception-ResNet-v2.

Parameters at 1000 classes (BN gamma and beta counted):

    inception_v4               42,679,816   Figures 3-9
    inception_v4_released      42,679,816   the released net (TF-slim), = timm's port
    inception_resnet_v1        22,756,328   Figures 7, 10-15 (no released twin)
    inception_resnet_v2        55,843,464   the released net; = timm's port
    inception_resnet_v2_paper  32,433,928   Figure 15 as drawn

`inception_resnet_v2` is the released net (TF-slim), not the literal Figure 15: its stem is
Figure 14's up to the 3x3 192 convolution, then a 3x3/2 max pool and a 35x35 Inception block
to 320 channels; the A / B / C blocks repeat 10 / 20 / 10 times (the last C block linear, with
scale 1); and a 1x1 convolution to 1536 precedes the pooling. Its branch widths are those of
Figures 16-19, and Reduction-A is Table 1's k, l, m, n = 256, 256, 384, 384. Figure 15 as drawn
(the Figure 3 stem, 5 / 10 / 5 blocks) is `inception_resnet_v2_paper`, with the expansion
widths made consistent: the figures' 1154 and 2048 cannot be added to the 1152- and
2144-channel inputs that the other figures produce.
"""

import functools
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ConfigError
from cnn_jax.models import inception_blocks, layers
from cnn_jax.models.inception_blocks import Branch

MIN_INPUT_SIZE = 75  # 75 -> 37 -> 35 -> 17 -> 15 -> 7 (35x35 grid) -> 3 (17x17) -> 1 (8x8)


class Block(NamedTuple):
    """A block of a layout: parallel branches, concatenated; `scale` set = Inception-ResNet."""

    branches: tuple[Branch, ...]
    scale: float | None = None  # residual scaling; None: no shortcut, no filter-expansion
    relu: bool = True  # ReLU after the residual sum


def sequence(*layer_specs: str) -> Block:
    """A plain sequence of layers (one branch)."""
    return Block((layer_specs,))


# Table 1: the filters k, l, m, n of Reduction-A (Figure 7) in each net.
REDUCTION_A_FILTERS = {
    "inception_v4": (192, 224, 256, 384),
    "inception_resnet_v1": (192, 192, 256, 384),
    "inception_resnet_v2": (256, 256, 384, 384),
}


def reduction_a(k: int, l: int, m: int, n: int) -> Block:  # noqa: E741 (Table 1's names)
    """Figure 7: 35x35 -> 17x17."""
    return Block((("max 3x3/2 V",), (f"3x3/2 V {n}",), (f"1x1 {k}", f"3x3 {l}", f"3x3/2 V {m}")))


# ---- Inception-v4 (Figures 3-9) ----

STEM = (  # Figure 3: 299x299x3 -> 35x35x384 (Inception-v4 and Inception-ResNet-v2)
    sequence("3x3/2 V 32", "3x3 V 32", "3x3 64"),  # 147x147x64
    Block((("max 3x3/2 V",), ("3x3/2 V 96",))),  # 73x73x160
    Block((("1x1 64", "3x3 V 96"), ("1x1 64", "7x1 64", "1x7 64", "3x3 V 96"))),  # 71x71x192
    Block((("3x3/2 V 192",), ("max 3x3/2 V",))),  # 35x35x384
)
INCEPTION_A = Block(  # Figure 4: 35x35x384
    (("avg 3x3", "1x1 96"), ("1x1 96",), ("1x1 64", "3x3 96"), ("1x1 64", "3x3 96", "3x3 96"))
)
INCEPTION_B = Block(  # Figure 5: 17x17x1024
    (
        ("avg 3x3", "1x1 128"),
        ("1x1 384",),
        ("1x1 192", "1x7 224", "7x1 256"),
        ("1x1 192", "1x7 192", "7x1 224", "1x7 224", "7x1 256"),
    )
)
INCEPTION_C = Block(  # Figure 6: 8x8x1536
    (
        ("avg 3x3", "1x1 256"),
        ("1x1 256",),
        ("1x1 384", ("1x3 256", "3x1 256")),
        ("1x1 384", "1x3 448", "3x1 512", ("3x1 256", "1x3 256")),
    )
)
REDUCTION_B = Block(  # Figure 8: 17x17x1024 -> 8x8x1536
    (
        ("max 3x3/2 V",),
        ("1x1 192", "3x3/2 V 192"),
        ("1x1 256", "1x7 256", "7x1 320", "3x3/2 V 320"),
    )
)

# ---- Inception-v4 as released (TF-slim; timm's port) ----
# The same layers as Figures 3-9, but each block's branches in the release's order (the pooling
# branch last) and some 1x7 / 7x1 (1x3 / 3x1) pairs in the other order.

STEM_RELEASED = (
    STEM[0],
    STEM[1],
    Block((("1x1 64", "3x3 V 96"), ("1x1 64", "1x7 64", "7x1 64", "3x3 V 96"))),
    STEM[3],
)
INCEPTION_A_RELEASED = Block(
    (("1x1 96",), ("1x1 64", "3x3 96"), ("1x1 64", "3x3 96", "3x3 96"), ("avg 3x3", "1x1 96"))
)
INCEPTION_B_RELEASED = Block(
    (
        ("1x1 384",),
        ("1x1 192", "1x7 224", "7x1 256"),
        ("1x1 192", "7x1 192", "1x7 224", "7x1 224", "1x7 256"),
        ("avg 3x3", "1x1 128"),
    )
)
INCEPTION_C_RELEASED = Block(
    (
        ("1x1 256",),
        ("1x1 384", ("1x3 256", "3x1 256")),
        ("1x1 384", "3x1 448", "1x3 512", ("1x3 256", "3x1 256")),
        ("avg 3x3", "1x1 256"),
    )
)
REDUCTION_B_RELEASED = Block(REDUCTION_B.branches[1:] + REDUCTION_B.branches[:1])


def reduction_a_released(k: int, l: int, m: int, n: int) -> Block:  # noqa: E741 (Table 1's names)
    """Figure 7 with the max pool last, as released."""
    return Block(((f"3x3/2 V {n}",), (f"1x1 {k}", f"3x3 {l}", f"3x3/2 V {m}"), ("max 3x3/2 V",)))


# ---- Inception-ResNet-v1 (Figures 10-14) ----

STEM_RESNET_V1 = (  # Figure 14: 299x299x3 -> 35x35x256
    sequence("3x3/2 V 32", "3x3 V 32", "3x3 64", "max 3x3/2 V", "1x1 80", "3x3 V 192"),
    sequence("3x3/2 V 256"),
)
RESNET_V1_A = (("1x1 32",), ("1x1 32", "3x3 32"), ("1x1 32", "3x3 32", "3x3 32"))  # Fig. 10
RESNET_V1_B = (("1x1 128",), ("1x1 128", "1x7 128", "7x1 128"))  # Figure 11
RESNET_V1_C = (("1x1 192",), ("1x1 192", "1x3 192", "3x1 192"))  # Figure 13
RESNET_V1_REDUCTION_B = Block(  # Figure 12: 17x17x896 -> 8x8x1792
    (
        ("max 3x3/2 V",),
        ("1x1 256", "3x3/2 V 384"),
        ("1x1 256", "3x3/2 V 256"),
        ("1x1 256", "3x3 256", "3x3/2 V 256"),
    )
)

# ---- Inception-ResNet-v2 (Figures 16-19; stem of the released net) ----

STEM_RESNET_V2_RELEASED = (  # TF-slim: 299x299x3 -> 35x35x320
    sequence("3x3/2 V 32", "3x3 V 32", "3x3 64", "max 3x3/2 V", "1x1 80", "3x3 V 192"),
    sequence("max 3x3/2 V"),  # 35x35x192
    Block(
        (
            ("1x1 96",),
            ("1x1 48", "5x5 64"),
            ("1x1 64", "3x3 96", "3x3 96"),
            ("avg 3x3", "1x1 64"),
        )
    ),
)
RESNET_V2_A = (("1x1 32",), ("1x1 32", "3x3 32"), ("1x1 32", "3x3 48", "3x3 64"))  # Fig. 16
RESNET_V2_B = (("1x1 192",), ("1x1 128", "1x7 160", "7x1 192"))  # Figure 17
RESNET_V2_C = (("1x1 192",), ("1x1 192", "1x3 224", "3x1 256"))  # Figure 19
RESNET_V2_REDUCTION_B = Block(  # Figure 18: 17x17 -> 8x8, adds 384 + 288 + 320 channels
    (
        ("max 3x3/2 V",),
        ("1x1 256", "3x3/2 V 384"),
        ("1x1 256", "3x3/2 V 288"),
        ("1x1 256", "3x3 288", "3x3/2 V 320"),
    )
)

RESNET_V2_REDUCTION_B_RELEASED = Block(  # Figure 18 with the max pool last, as released
    RESNET_V2_REDUCTION_B.branches[1:] + RESNET_V2_REDUCTION_B.branches[:1]
)

SCALE_A, SCALE_B, SCALE_C = 0.17, 0.10, 0.20  # residual scaling, section 3.3

Layout = tuple[tuple[str, tuple[Block, ...]], ...]

# Figure 9 (4 x A, 7 x B, 3 x C).
INCEPTION_V4: Layout = (
    ("stem", STEM),
    ("inception_a", (INCEPTION_A,) * 4),
    ("reduction_a", (reduction_a(*REDUCTION_A_FILTERS["inception_v4"]),)),
    ("inception_b", (INCEPTION_B,) * 7),
    ("reduction_b", (REDUCTION_B,)),
    ("inception_c", (INCEPTION_C,) * 3),
)

INCEPTION_V4_RELEASED: Layout = (
    ("stem", STEM_RELEASED),
    ("inception_a", (INCEPTION_A_RELEASED,) * 4),
    ("reduction_a", (reduction_a_released(*REDUCTION_A_FILTERS["inception_v4"]),)),
    ("inception_b", (INCEPTION_B_RELEASED,) * 7),
    ("reduction_b", (REDUCTION_B_RELEASED,)),
    ("inception_c", (INCEPTION_C_RELEASED,) * 3),
)

# Figure 15 with the v1 modules (5 x A, 10 x B, 5 x C).
INCEPTION_RESNET_V1: Layout = (
    ("stem", STEM_RESNET_V1),
    ("inception_resnet_a", (Block(RESNET_V1_A, SCALE_A),) * 5),
    ("reduction_a", (reduction_a(*REDUCTION_A_FILTERS["inception_resnet_v1"]),)),
    ("inception_resnet_b", (Block(RESNET_V1_B, SCALE_B),) * 10),
    ("reduction_b", (RESNET_V1_REDUCTION_B,)),
    ("inception_resnet_c", (Block(RESNET_V1_C, SCALE_C),) * 5),
)

# The released net (TF-slim, timm): 10 x A, 20 x B, 10 x C (the last one linear), 1x1 conv 1536.
INCEPTION_RESNET_V2: Layout = (
    ("stem", STEM_RESNET_V2_RELEASED),
    ("inception_resnet_a", (Block(RESNET_V2_A, SCALE_A),) * 10),
    ("reduction_a", (reduction_a_released(*REDUCTION_A_FILTERS["inception_resnet_v2"]),)),
    ("inception_resnet_b", (Block(RESNET_V2_B, SCALE_B),) * 20),
    ("reduction_b", (RESNET_V2_REDUCTION_B_RELEASED,)),
    ("inception_resnet_c", (Block(RESNET_V2_C, SCALE_C),) * 9 + (Block(RESNET_V2_C, 1.0, False),)),
    ("conv_7b", (sequence("1x1 1536"),)),
)

# Figure 15 as drawn: the Figure 3 stem and 5 x A, 10 x B, 5 x C.
INCEPTION_RESNET_V2_PAPER: Layout = (
    ("stem", STEM),
    ("inception_resnet_a", (Block(RESNET_V2_A, SCALE_A),) * 5),
    ("reduction_a", (reduction_a(*REDUCTION_A_FILTERS["inception_resnet_v2"]),)),
    ("inception_resnet_b", (Block(RESNET_V2_B, SCALE_B),) * 10),
    ("reduction_b", (RESNET_V2_REDUCTION_B,)),
    ("inception_resnet_c", (Block(RESNET_V2_C, SCALE_C),) * 5),
)


class Inception(nn.Module):
    """An Inception-v4 / Inception-ResNet net given by its layout.

    Attributes:
      layout: the stages, e.g. INCEPTION_V4.
      num_classes: outputs of the final linear layer.
      dropout_rate: before the linear layer (the paper keeps 0.8, i.e. drops 0.2).
      bn_epsilon: BatchNorm's epsilon (the released nets': 1e-3).
      dtype: computation dtype; parameters and BN statistics stay float32, logits are float32.
      conv, act: the convolution module and the activation (flax's Conv and relu).
    """

    layout: Layout
    num_classes: int = 1000
    dropout_rate: float = 0.2
    bn_epsilon: float = 1e-5
    dtype: Any = jnp.float32
    conv: layers.ModuleDef = nn.Conv
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        if min(x.shape[1:3]) < MIN_INPUT_SIZE:
            raise ConfigError(
                f"Inception-v4 / Inception-ResNet need inputs of at least {MIN_INPUT_SIZE}x"
                f"{MIN_INPUT_SIZE} pixels (299x299 in the paper); got {x.shape[1]}x{x.shape[2]}."
            )
        norm = layers.batch_norm(train, self.dtype, self.bn_epsilon)
        conv = functools.partial(
            inception_blocks.BasicConv, norm=norm, dtype=self.dtype, conv=self.conv, act=self.act
        )
        x = x.astype(self.dtype)
        for stage, blocks in self.layout:
            for i, block in enumerate(blocks, 1):
                name = stage if len(blocks) == 1 else f"{stage}{i}"
                if block.scale is None:
                    x = inception_blocks.Mixed(block.branches, conv, name=name)(x)
                else:
                    x = inception_blocks.Residual(
                        block.branches, block.scale, conv, block.relu, self.dtype, self.conv,
                        self.act, name=name,
                    )(x)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)


MODELS = {
    "inception_v4": functools.partial(Inception, INCEPTION_V4),
    "inception_resnet_v1": functools.partial(Inception, INCEPTION_RESNET_V1),
    "inception_v4_released": functools.partial(Inception, INCEPTION_V4_RELEASED, bn_epsilon=1e-3),
    "inception_resnet_v2": functools.partial(Inception, INCEPTION_RESNET_V2, bn_epsilon=1e-3),
    "inception_resnet_v2_paper": functools.partial(Inception, INCEPTION_RESNET_V2_PAPER),
}
