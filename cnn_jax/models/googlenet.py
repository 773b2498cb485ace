"""GoogLeNet (Szegedy et al. 2014, "Going deeper with convolutions", Table 1 and Figure 3).

Stem (Figure 3): 7x7/2 convolution (64) -> 3x3/2 max pool -> LRN -> 1x1 convolution (64) ->
3x3 convolution (192) -> LRN -> 3x3/2 max pool. LRN is Caffe's bvlc_googlenet's (size 5,
alpha 1e-4 divided by the size, beta 0.75, k 1) and has no parameters. Then nine Inception
modules (Figure 2b) in three stages at 28x28, 14x14 and 7x7 with 3x3/2 max pools between
them, 7x7 average pooling (global), dropout 40% and a linear layer. ReLU follows every
convolution. As published the convolutions carry biases and there is no BN; `googlenet_bn`
puts BN after every convolution instead (and drops LRN), as most re-implementations do.

Two auxiliary classifiers sit on the outputs of 4a and 4d: 5x5/3 average pooling (VALID) ->
1x1 convolution (128) -> FC 1024 -> dropout 70% -> linear. In training (train=True) they
report their logits with `sow('aux', 'aux1' / 'aux2', ...)`, and the train step adds their
losses with weight `train.aux_loss_weight` (0.3 in the paper); at inference they are not
computed. Their parameters are created by `init` (which runs with train=False), so the
parameter tree has them unless aux_classifiers=False.

Parameters at 1000 classes: 6,998,552 without the auxiliary classifiers (the paper's Table 1
column sums to about 6.8M; recounted from its channel numbers it is 7.0M) and 13,378,280 with
them (3,188,840 + 3,190,888, mostly their 2048x1024 FC layers). conv1 pads 3 on each side
(Caffe's bvlc_googlenet; 'SAME' would pad 2 and 3). The 3x3/2 max pools use SAME padding, which
on these even maps pads one row and column at the end: the windows of Caffe's ceil-mode pooling,
and the paper's 112/56/28/14/7 maps at 224x224. The 5x5
branches are 5x5 as in the paper (torchvision's are 3x3).
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ConfigError
from cnn_jax.models import inception_blocks, layers

# Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),  # 28x28x256
    "3b": (128, 128, 192, 32, 96, 64),  # 28x28x480
    "4a": (192, 96, 208, 16, 48, 64),  # 14x14x512
    "4b": (160, 112, 224, 24, 64, 64),  # 14x14x512
    "4c": (128, 128, 256, 24, 64, 64),  # 14x14x512
    "4d": (112, 144, 288, 32, 64, 64),  # 14x14x528
    "4e": (256, 160, 320, 32, 128, 128),  # 14x14x832
    "5a": (256, 160, 320, 32, 128, 128),  # 7x7x832
    "5b": (384, 192, 384, 48, 128, 128),  # 7x7x1024
}
STAGES = (("3a", "3b"), ("4a", "4b", "4c", "4d", "4e"), ("5a", "5b"))  # 3x3/2 max pool between
AUX_CLASSIFIERS = {"4a": "aux1", "4d": "aux2"}  # Inception output -> sown name of the logits
AUX_POOL = 5  # 5x5/3 average pooling: the 4a map must be at least 5x5
MIN_INPUT_SIZE = 65  # 65 -> 33 -> 17 -> 9 -> 5 at 4a (the paper's 224 gives 14)


def inception_module(
    c1x1: int, c3x3_reduce: int, c3x3: int, c5x5_reduce: int, c5x5: int, pool_proj: int
) -> tuple[inception_blocks.Branch, ...]:
    """Figure 2(b): the branches of an Inception module with dimension reductions."""
    return (
        (f"1x1 {c1x1}",),
        (f"1x1 {c3x3_reduce}", f"3x3 {c3x3}"),
        (f"1x1 {c5x5_reduce}", f"5x5 {c5x5}"),
        ("max 3x3", f"1x1 {pool_proj}"),
    )


class AuxClassifier(nn.Module):
    """Section 5: 5x5/3 avg pool -> 1x1 conv 128 + ReLU -> FC 1024 + ReLU -> dropout -> linear."""

    num_classes: int
    conv: layers.ModuleDef
    dropout_rate: float = 0.7
    dtype: Any = jnp.float32
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        if min(x.shape[1:3]) < AUX_POOL:
            raise ConfigError(
                f"GoogLeNet's auxiliary classifiers pool 5x5 windows of the 4a map, which is "
                f"{x.shape[1]}x{x.shape[2]} here; use inputs of at least "
                f"{MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels or set aux_classifiers=False."
            )
        x = nn.avg_pool(x, (AUX_POOL, AUX_POOL), strides=(3, 3), padding="VALID")
        x = self.conv(128, (1, 1), name="conv")(x)
        x = x.reshape(x.shape[0], -1)
        x = self.act(nn.Dense(1024, dtype=self.dtype, name="fc")(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)


class GoogLeNet(nn.Module):
    """GoogLeNet, Table 1.

    Attributes:
      num_classes: outputs of the final (and auxiliary) linear layers.
      batch_norm: BN after every convolution (no conv biases) instead of the paper's plain convs.
      lrn: local response normalization in the stem, as in the paper.
      aux_classifiers: build the two auxiliary classifiers (sown in training only).
      dropout_rate: before the final linear layer (40% in the paper).
      dtype: computation dtype; parameters stay float32, logits are float32.
      conv, act: the convolution module and the activation (flax's Conv and relu).
    """

    num_classes: int = 1000
    batch_norm: bool = False
    lrn: bool = True
    aux_classifiers: bool = True
    dropout_rate: float = 0.4
    dtype: Any = jnp.float32
    conv: layers.ModuleDef = nn.Conv
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        norm = layers.batch_norm(train, self.dtype) if self.batch_norm else None
        conv = functools.partial(
            inception_blocks.BasicConv, norm=norm, dtype=self.dtype, conv=self.conv, act=self.act
        )
        maybe_lrn = lambda y: y
        if self.lrn:  # Caffe's GoogLeNet LRN (k=1, alpha=1e-4 divided by the window of 5)
            maybe_lrn = layers.LocalResponseNorm(n=5, k=1.0, alpha=1e-4 / 5, beta=0.75)
        max_pool = functools.partial(
            nn.max_pool, window_shape=(3, 3), strides=(2, 2), padding="SAME"
        )

        x = x.astype(self.dtype)
        x = conv(64, (7, 7), strides=2, padding=((3, 3), (3, 3)), name="conv1")(x)
        x = maybe_lrn(max_pool(x))
        x = conv(64, (1, 1), name="conv2_reduce")(x)
        x = conv(192, (3, 3), name="conv2")(x)
        x = max_pool(maybe_lrn(x))
        for i, stage in enumerate(STAGES):
            if i:
                x = max_pool(x)
            for name in stage:
                x = inception_blocks.Mixed(
                    inception_module(*INCEPTION[name]), conv, name=f"inception_{name}"
                )(x)
                aux = AUX_CLASSIFIERS.get(name)
                if aux and self.aux_classifiers and (train or self.is_initializing()):
                    head = AuxClassifier(
                        self.num_classes, conv, dtype=self.dtype, act=self.act,
                        name=f"{aux}_classifier",
                    )
                    logits = head(x, train)
                    if train:
                        self.sow("aux", aux, logits)
        x = jnp.mean(x, axis=(1, 2))  # 7x7 average pooling at 224x224
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)


MODELS = {
    "googlenet": GoogLeNet,
    "googlenet_bn": functools.partial(GoogLeNet, batch_norm=True, lrn=False),
}
