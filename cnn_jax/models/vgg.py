"""VGG nets A-E (Simonyan & Zisserman 2014, section 2, Table 1), with torchvision's *_bn.

Table 1 as data: five stages, each a stack of "conv<receptive field>-<channels>" layers
(stride 1, padding 1 for 3x3, biases, ReLU; "LRN" after a ReLU) closed by a 2x2/2 max pool;
then FC-4096, FC-4096 (each ReLU + dropout 0.5, section 3.1) and FC-num_classes. At 224x224
the last pool leaves 7x7x512 maps. Like torchvision, an adaptive 7x7 average pool (the
identity at 224) precedes the FCs, so any input of at least 32x32 gives the same parameters.

Parameters at 1000 classes (3x3 conv: 9 * c_in * c_out + c_out; FCs: 25088*4096 + 4096,
4096*4096 + 4096, 4096*1000 + 1000 = 58,631,144 for all):

    A, A-LRN  132,863,336    B  133,047,848    C  133,638,952    D  138,357,544
    E         143,667,240

C is D with the third conv of stages 3-5 at 1x1, 8 * (256^2 + 2 * 512^2) = 4,718,592 fewer.
The `_bn` variants put BatchNorm between every conv and its ReLU and keep the conv biases,
as torchvision's vgg*_bn do: 2 * (channels of all convs) more, e.g. 5,504 for A.

Initialization: the paper trained A from N(0, 0.01) weights and started the deeper nets
from A; after submission it found Glorot & Bengio (2010) initialization trains them from
scratch (section 3.1), which is what these modules use for every conv and FC weight; biases
start at zero.
"""

import functools
import re
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ConfigError
from cnn_jax.models import layers

# Table 1, one tuple of layers per stage; every stage ends with "maxpool".
CONFIGS = {
    "A": (
        ("conv3-64",),
        ("conv3-128",),
        ("conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512"),
    ),
    "A-LRN": (
        ("conv3-64", "LRN"),
        ("conv3-128",),
        ("conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512"),
    ),
    "B": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512"),
    ),
    "C": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256", "conv1-256"),
        ("conv3-512", "conv3-512", "conv1-512"),
        ("conv3-512", "conv3-512", "conv1-512"),
    ),
    "D": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512", "conv3-512"),
    ),
    "E": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256", "conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512", "conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512", "conv3-512", "conv3-512"),
    ),
}
CONV_PATTERN = re.compile(r"conv(\d+)-(\d+)")
DROPOUT_RATE = 0.5
POOLED_SIZE = (7, 7)

glorot_uniform = nn.initializers.xavier_uniform()


class VGG(nn.Module):
    """A configuration of Table 1.

    Layers are named like the Caffe release: conv<stage>_<index> (bn<stage>_<index>), fc6-8.

    Attributes:
      config: "A", "A-LRN", "B", "C", "D" or "E".
      num_classes: outputs of fc8.
      batch_norm: BN after every conv (torchvision's *_bn), conv biases kept.
      width: channels of the first stage (64 in the paper); every conv scales by width / 64.
      fc_features: width of fc6 and fc7 (4096 in the paper).
      dtype: computation dtype; parameters stay float32 and logits are float32.
      conv, act: the convolution module and the activation (flax's Conv and relu).
    """

    config: str
    num_classes: int = 1000
    batch_norm: bool = False
    width: int = 64
    fc_features: int = 4096
    dtype: Any = jnp.float32
    conv: layers.ModuleDef = nn.Conv
    act: Callable = nn.relu

    def __post_init__(self) -> None:
        if self.config not in CONFIGS:
            known = ", ".join(CONFIGS)
            raise ConfigError(f"VGG config must be one of {known}; got {self.config!r}.")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        norm = layers.batch_norm(train, self.dtype)
        x = x.astype(self.dtype)
        for stage, stage_layers in enumerate(CONFIGS[self.config], start=1):
            convs = 0
            for layer in stage_layers:
                if layer == "LRN":
                    x = layers.LocalResponseNorm()(x)
                    continue
                size, channels = map(int, CONV_PATTERN.fullmatch(layer).groups())
                convs += 1
                x = self.conv(
                    round(channels * self.width / 64),
                    (size, size),
                    padding="SAME",  # Padding 1 for 3x3, 0 for 1x1: the map size is kept.
                    kernel_init=glorot_uniform,
                    dtype=self.dtype,
                    name=f"conv{stage}_{convs}",
                )(x)
                if self.batch_norm:
                    x = norm(name=f"bn{stage}_{convs}")(x)
                x = self.act(x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = layers.adaptive_avg_pool(x, POOLED_SIZE)
        x = x.reshape(x.shape[0], -1)
        dense = functools.partial(nn.Dense, kernel_init=glorot_uniform, dtype=self.dtype)
        for name in ("fc6", "fc7"):
            x = self.act(dense(self.fc_features, name=name)(x))
            x = nn.Dropout(DROPOUT_RATE, deterministic=not train)(x)
        return dense(self.num_classes, name="fc8")(x).astype(jnp.float32)


# Paper names (vgg_a ... vgg_e, vgg_a_lrn) and torchvision's depth names for the same nets.
_NAMES = {
    "vgg_a": "A",
    "vgg11": "A",
    "vgg_a_lrn": "A-LRN",
    "vgg_b": "B",
    "vgg13": "B",
    "vgg_c": "C",
    "vgg_d": "D",
    "vgg16": "D",
    "vgg_e": "E",
    "vgg19": "E",
}

MODELS = {
    name + suffix: functools.partial(VGG, config=config, batch_norm=bool(suffix))
    for name, config in _NAMES.items()
    for suffix in ("", "_bn")
}
