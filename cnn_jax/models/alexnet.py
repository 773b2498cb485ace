"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, section 3, Fig. 2) and torchvision's variant.

The paper's net, with its two GPU towers as feature groups (a grouped layer sees only the
maps of its own tower; conv3 and the FC layers connect across):

    layer   filters  kernel / stride, pad  groups  output       parameters
    input                                           227x227x3
    conv1   96       11x11 / 4, 0          1       55x55x96     11*11*3*96 + 96     =     34,944
            ReLU, LRN, max pool 3x3 / 2                  27x27x96
    conv2   256      5x5 / 1, 2            2       27x27x256    5*5*48*256 + 256    =    307,456
            ReLU, LRN, max pool 3x3 / 2                  13x13x256
    conv3   384      3x3 / 1, 1            1       13x13x384    3*3*256*384 + 384   =    885,120
    conv4   384      3x3 / 1, 1            2       13x13x384    3*3*192*384 + 384   =    663,936
    conv5   256      3x3 / 1, 1            2       13x13x256    3*3*192*256 + 256   =    442,624
            ReLU, max pool 3x3 / 2                       6x6x256
    fc6     4096     ReLU, dropout 0.5                          9216*4096 + 4096    = 37,752,832
    fc7     4096     ReLU, dropout 0.5                          4096*4096 + 4096    = 16,781,312
    fc8     1000                                                4096*1000 + 1000    =  4,097,000
                                                                               total   60,965,224

Section 3.5: ReLU (section 3.1) follows every layer but the last; LRN (section 3.3, k=2,
n=5, alpha=1e-4, beta=0.75) follows the ReLUs of conv1 and conv2; max pools (overlapping,
3x3 stride 2, section 3.4) follow both LRNs and conv5. Dropout zeroes the outputs of fc6
and fc7 (section 4.2). The paper says 224x224 inputs, but its map sizes need 227.
Initialization (section 5): weights from N(0, 0.01^2); biases 1 in conv2, conv4, conv5,
fc6 and fc7 (to give the ReLUs positive inputs early on), 0 elsewhere. fc6 takes the
flattened conv5 pool, so another input size changes fc6's shape.

`alexnet_owt` is torchvision's single-tower net from "One weird trick for parallelizing
convolutional neural networks" (Krizhevsky 2014): 224x224 input, filters 64/192/384/256/256,
no LRN and no groups, then an adaptive average pool to 6x6, dropout before fc6 and fc7;
61,100,840 parameters at 1000 classes (see AlexNetOWT). Its convs use He-normal init,
its dense layers Flax's default (LeCun normal), all biases zero.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.models import layers

DROPOUT_RATE = 0.5

# (name, filters, kernel, stride, padding, feature groups, LRN after ReLU, max pool after).
ALEXNET_CONVS = (
    ("conv1", 96, 11, 4, 0, 1, True, True),
    ("conv2", 256, 5, 1, 2, 2, True, True),
    ("conv3", 384, 3, 1, 1, 1, False, False),
    ("conv4", 384, 3, 1, 1, 2, False, False),
    ("conv5", 256, 3, 1, 1, 2, False, True),
)
ALEXNET_BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")  # Section 5.

# torchvision's alexnet (name, filters, kernel, stride, padding, max pool after).
ALEXNET_OWT_CONVS = (
    ("conv1", 64, 11, 4, 2, True),
    ("conv2", 192, 5, 1, 2, True),
    ("conv3", 384, 3, 1, 1, False),
    ("conv4", 256, 3, 1, 1, False),
    ("conv5", 256, 3, 1, 1, True),
)


def _bias_init(name: str) -> nn.initializers.Initializer:
    """Section 5: biases 1 in conv2, conv4, conv5 and the hidden FC layers, else 0."""
    return nn.initializers.constant(1.0 if name in ALEXNET_BIAS_ONE else 0.0)


def max_pool(x: jnp.ndarray) -> jnp.ndarray:
    """Overlapping pooling, 3x3 windows at stride 2 (section 3.4)."""
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class AlexNet(nn.Module):
    """The 2012 paper's AlexNet on 227x227x3 images, two towers as feature groups.

    Attributes:
      num_classes: outputs of fc8 (1000 for ImageNet).
      fc_features: width of fc6 and fc7 (4096 in the paper; smaller for quick tests).
      dtype: computation dtype; parameters stay float32 and logits are float32.
      conv, act: the convolution module and the activation (flax's Conv and relu).
    """

    num_classes: int = 1000
    fc_features: int = 4096
    dtype: Any = jnp.float32
    conv: layers.ModuleDef = nn.Conv
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        weights = nn.initializers.normal(stddev=0.01)

        x = x.astype(self.dtype)
        for name, filters, kernel, stride, pad, groups, lrn, pool in ALEXNET_CONVS:
            x = self.conv(
                filters,
                (kernel, kernel),
                strides=stride,
                padding=((pad, pad), (pad, pad)),
                feature_group_count=groups,
                kernel_init=weights,
                bias_init=_bias_init(name),
                dtype=self.dtype,
                name=name,
            )(x)
            x = self.act(x)
            if lrn:
                x = layers.LocalResponseNorm()(x)
            if pool:
                x = max_pool(x)
        x = x.reshape(x.shape[0], -1)
        dense = functools.partial(nn.Dense, kernel_init=weights, dtype=self.dtype)
        for name in ("fc6", "fc7"):
            x = self.act(dense(self.fc_features, bias_init=_bias_init(name), name=name)(x))
            x = nn.Dropout(DROPOUT_RATE, deterministic=not train)(x)
        return dense(self.num_classes, name="fc8")(x).astype(jnp.float32)


class AlexNetOWT(nn.Module):
    """torchvision's alexnet ("one weird trick"), on 224x224x3 images.

    Maps: 224 -> conv1 55 -> pool 27 -> conv2 27 -> pool 13 -> conv3-5 13 -> pool 6, then the
    adaptive 6x6 average pool (the identity at 224, so other input sizes keep fc6's shape).

    Parameters: conv1 11*11*3*64 + 64 = 23,296; conv2 5*5*64*192 + 192 = 307,392;
    conv3 3*3*192*384 + 384 = 663,936; conv4 3*3*384*256 + 256 = 884,992;
    conv5 3*3*256*256 + 256 = 590,080; fc6 9216*4096 + 4096 = 37,752,832;
    fc7 16,781,312; fc8 4,097,000; total 61,100,840.

    Attributes:
      num_classes: outputs of fc8.
      fc_features: width of fc6 and fc7 (4096; smaller for quick tests).
      dtype: computation dtype; parameters stay float32 and logits are float32.
      conv, act: the convolution module and the activation (flax's Conv and relu).
    """

    num_classes: int = 1000
    fc_features: int = 4096
    dtype: Any = jnp.float32
    conv: layers.ModuleDef = nn.Conv
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        x = x.astype(self.dtype)
        for name, filters, kernel, stride, pad, pool in ALEXNET_OWT_CONVS:
            x = self.conv(
                filters,
                (kernel, kernel),
                strides=stride,
                padding=((pad, pad), (pad, pad)),
                kernel_init=layers.he_normal,
                dtype=self.dtype,
                name=name,
            )(x)
            x = self.act(x)
            if pool:
                x = max_pool(x)
        x = layers.adaptive_avg_pool(x, (6, 6))
        x = x.reshape(x.shape[0], -1)
        dense = functools.partial(nn.Dense, dtype=self.dtype)
        for name in ("fc6", "fc7"):
            x = nn.Dropout(DROPOUT_RATE, deterministic=not train)(x)
            x = self.act(dense(self.fc_features, name=name)(x))
        return dense(self.num_classes, name="fc8")(x).astype(jnp.float32)


MODELS = {"alexnet": AlexNet, "alexnet_owt": AlexNetOWT}
