"""torchvision's GoogLeNet: the BatchNorm re-implementation whose ImageNet weights it ships.

Table 1's layers and widths (`googlenet.INCEPTION`), with torchvision's changes from the paper
(Szegedy et al. 2014), which its weights need:

- BN (epsilon 1e-3) after every convolution, which has no bias; no LRN;
- the "5x5" branch of every Inception module is a 3x3 convolution;
- max pools take Caffe's ceil-mode windows (`ceil_max_pool`), and the one between 4e and 5a
  is 2x2 / 2 instead of 3x3 / 2;
- the auxiliary classifiers pool to 4x4 with PyTorch's adaptive average pooling (the
  paper's 5x5 / 3 pooling gives 4x4 too at 224x224, over other windows), then 1x1 conv 128
  + BN, FC 1024, dropout 70%, linear; the final dropout is 20% (the paper's 40%);
- `transform_input`: torchvision's weights expect inputs normalized with ImageNet's mean and
  standard deviation and rescale them to the [-1, 1] range their training used.

Parameters at 1000 classes: 6,624,904 without the auxiliary classifiers, 13,004,888 with them.
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.models import googlenet, inception_blocks, layers

BN_EPSILON = 1e-3
AUX_POOLED = (4, 4)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def inception_module(*widths: int) -> tuple[inception_blocks.Branch, ...]:
    """torchvision's Inception module: Figure 2(b) with a 3x3 convolution in the 5x5 branch."""
    branches = googlenet.inception_module(*widths)
    reduce, five = branches[2]
    return branches[:2] + ((reduce, five.replace("5x5", "3x3")),) + branches[3:]


def ceil_max_pool(x: jnp.ndarray, window: int, stride: int) -> jnp.ndarray:
    """PyTorch's MaxPool2d(window, stride, ceil_mode=True) without padding: the output has
    ceil((L - window) / stride) + 1 cells, the last window clipped at the edge."""
    pads = []
    for length in x.shape[1:3]:
        out = -(-(length - window) // stride) + 1
        if (out - 1) * stride >= length:  # a window may not start past the input
            out -= 1
        pads.append((0, max(0, (out - 1) * stride + window - length)))
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=pads)


class AuxClassifier(nn.Module):
    """torchvision's InceptionAux: adaptive 4x4 average pool, 1x1 conv 128 + BN + ReLU, FC 1024
    + ReLU, dropout 70%, linear."""

    num_classes: int
    conv: layers.ModuleDef
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        x = self.conv(128, (1, 1), name="conv")(layers.adaptive_avg_pool(x, AUX_POOLED))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(1024, dtype=self.dtype, name="fc")(x))
        x = nn.Dropout(0.7, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)


class GoogLeNetTorchvision(nn.Module):
    """torchvision.models.googlenet, with the parameter names of `googlenet.GoogLeNet`.

    Attributes:
      num_classes: outputs of the final (and auxiliary) linear layers.
      aux_classifiers: build the two auxiliary classifiers (sown in training only).
      transform_input: map ImageNet-normalized inputs to the [-1, 1] scaling (torchvision
        sets it with its ImageNet weights).
      dropout_rate: before the final linear layer.
      dtype: computation dtype; parameters stay float32, logits are float32.
    """

    num_classes: int = 1000
    aux_classifiers: bool = True
    transform_input: bool = False
    dropout_rate: float = 0.2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        norm = layers.batch_norm(train, self.dtype, BN_EPSILON)
        conv = functools.partial(inception_blocks.BasicConv, norm=norm, dtype=self.dtype)
        if self.transform_input:  # x * std / 0.5 + (mean - 0.5) / 0.5, per channel
            std, mean = jnp.asarray(IMAGENET_STD), jnp.asarray(IMAGENET_MEAN)
            x = x * (std / 0.5) + (mean - 0.5) / 0.5

        x = x.astype(self.dtype)
        x = conv(64, (7, 7), strides=2, padding=((3, 3), (3, 3)), name="conv1")(x)
        x = ceil_max_pool(x, 3, 2)
        x = conv(64, (1, 1), name="conv2_reduce")(x)
        x = conv(192, (3, 3), padding=((1, 1), (1, 1)), name="conv2")(x)
        x = ceil_max_pool(x, 3, 2)
        for i, stage in enumerate(googlenet.STAGES):
            if i:
                x = ceil_max_pool(x, 3, 2) if i == 1 else ceil_max_pool(x, 2, 2)
            for name in stage:
                x = inception_blocks.Mixed(
                    inception_module(*googlenet.INCEPTION[name]), conv, name=f"inception_{name}"
                )(x)
                aux = googlenet.AUX_CLASSIFIERS.get(name)
                if aux and self.aux_classifiers and (train or self.is_initializing()):
                    head = AuxClassifier(
                        self.num_classes, conv, self.dtype, name=f"{aux}_classifier"
                    )
                    logits = head(x, train)
                    if train:
                        self.sow("aux", aux, logits)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)


MODELS = {"googlenet_torchvision": GoogLeNetTorchvision}
