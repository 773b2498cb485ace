"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, section II.B, Fig. 2 and Table I).

    layer   maps   kernel   output     parameters
    input                   32x32x1
    C1      6      5x5      28x28x6    6 * (25 + 1)                            =    156
    S2      6      2x2/2    14x14x6    6 * (coefficient + bias)                =     12
    C3      16     5x5      10x10x16   Table I: 60 map pairs * 25 + 16 biases  =  1,516
    S4      16     2x2/2    5x5x16     16 * 2                                  =     32
    C5      120    5x5      1x1x120    120 * (16 * 25 + 1)                     = 48,120
    F6      84                         84 * (120 + 1)                          = 10,164
    output  10                         10 * (84 + 1)                           =    850
                                                                         total   60,850

C1 to F6 are the paper's 60,000 trainable parameters. Every unit up to F6 squashes its
weighted sum with the scaled tanh f(a) = 1.7159 tanh(2a/3) (eq. 6; Appendix A gives the
rationale). A subsampling unit adds its 2x2 inputs, multiplies the sum by a trainable
coefficient, adds a trainable bias and squashes; the 2x2 fields do not overlap and tile the
28x28 and 10x10 maps exactly, so S2 and S4 pad nothing. Weights start uniform in +-2.4 / fan-in
(Appendix A); biases at zero.

Simplification: the output layer is a plain linear layer (logits for a softmax
cross-entropy) instead of the paper's Euclidean RBF units with fixed weights and its MAP
criterion. MNIST's 28x28 digits are padded to 32x32 as in the paper.

Options (not the paper): `c3_table=False` connects every C3 map to all six S2 maps
(16 * (150 + 1) = 2,416 parameters) and `trainable_subsampling=False` makes S2/S4 plain
2x2 average pools with no squashing; with both the net has the common textbook count
156 + 2,416 + 48,120 + 10,164 + 850 = 61,706.
"""

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Table I: the S2 maps that feed each C3 map. Six maps see 3 contiguous maps, six see 4
# contiguous ones, three see 4 discontinuous ones and the last sees all six.
C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)  # fmt: skip


def scaled_tanh(x: jnp.ndarray) -> jnp.ndarray:
    """The squashing function A tanh(S a), A = 1.7159, S = 2/3 (eq. 6): f(1) = 1, f(-1) = -1."""
    return 1.7159 * jnp.tanh(2.0 / 3.0 * x)


def _uniform_by_fan_in(fan_in: int | np.ndarray) -> nn.initializers.Initializer:
    """Appendix A: uniform in [-2.4 / F, 2.4 / F], F the fan-in of the unit the weight feeds."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        bound = jnp.asarray(2.4 / np.asarray(fan_in, np.float32), dtype)
        return jax.random.uniform(key, shape, dtype, -1.0, 1.0) * bound

    return init


def _kernel_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """The fan-in rule for a dense (in, out) or conv (kh, kw, in, out) kernel."""
    return _uniform_by_fan_in(math.prod(shape[:-1]))(key, shape, dtype)


class PartialConv(nn.Module):
    """A 'VALID' convolution whose output map o sees only the input maps table[o] (C3).

    Only the connected 5x5 kernels are parameters, stored packed as (kh, kw, connections);
    they are scattered into a dense kernel with zeros elsewhere for one convolution.
    """

    table: tuple[tuple[int, ...], ...]
    kernel_size: tuple[int, int] = (5, 5)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kh, kw = self.kernel_size
        inputs = np.array([i for maps in self.table for i in maps])
        outputs = np.array([o for o, maps in enumerate(self.table) for _ in maps])
        fan_in = np.array([kh * kw * len(self.table[o]) for o in outputs])
        packed = self.param("kernel", _uniform_by_fan_in(fan_in), (kh, kw, len(inputs)))
        bias = self.param("bias", nn.initializers.zeros_init(), (len(self.table),))
        kernel = jnp.zeros((kh, kw, x.shape[-1], len(self.table)), jnp.float32)
        kernel = kernel.at[:, :, inputs, outputs].set(packed)
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype),
            kernel.astype(self.dtype),
            window_strides=(1, 1),
            padding="VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y + bias.astype(self.dtype)


class Subsampling(nn.Module):
    """S2/S4: the sum of each 2x2 block, times a trainable coefficient, plus a trainable bias."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        maps = x.shape[-1]
        coefficient = self.param("coefficient", _uniform_by_fan_in(4), (maps,))
        bias = self.param("bias", nn.initializers.zeros_init(), (maps,))
        sums = nn.avg_pool(x, (2, 2), strides=(2, 2)) * 4.0
        return sums * coefficient.astype(self.dtype) + bias.astype(self.dtype)


class LeNet5(nn.Module):
    """LeNet-5 on 32x32x1 images (see the module docstring for the layer table).

    Attributes:
      num_classes: outputs of the final (linear) layer; 10 digits in the paper.
      c3_table: connect C3 by the paper's Table I (True) or fully (False).
      trainable_subsampling: the paper's S2/S4 units (True) or plain 2x2 average pools (False).
      dtype: computation dtype; parameters stay float32 and logits are float32.
      conv: the convolution module of C1, C5 and a fully connected C3 (flax's Conv).
    """

    num_classes: int = 10
    c3_table: bool = True
    trainable_subsampling: bool = True
    dtype: Any = jnp.float32
    conv: Any = nn.Conv

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        del train  # No dropout or BN.
        conv = functools.partial(
            self.conv,
            kernel_size=(5, 5),
            padding="VALID",
            kernel_init=_kernel_init,
            dtype=self.dtype,
        )
        dense = functools.partial(nn.Dense, kernel_init=_kernel_init, dtype=self.dtype)

        def subsample(y: jnp.ndarray, name: str) -> jnp.ndarray:
            if self.trainable_subsampling:
                return scaled_tanh(Subsampling(dtype=self.dtype, name=name)(y))
            return nn.avg_pool(y, (2, 2), strides=(2, 2))

        x = scaled_tanh(conv(6, name="c1")(x.astype(self.dtype)))  # 28x28x6
        x = subsample(x, "s2")  # 14x14x6
        if self.c3_table:
            x = PartialConv(C3_TABLE, dtype=self.dtype, name="c3")(x)
        else:
            x = conv(16, name="c3")(x)
        x = scaled_tanh(x)  # 10x10x16
        x = subsample(x, "s4")  # 5x5x16
        x = scaled_tanh(conv(120, name="c5")(x))  # 1x1x120
        x = x.reshape(x.shape[0], -1)
        x = scaled_tanh(dense(84, name="f6")(x))
        return dense(self.num_classes, name="output")(x).astype(jnp.float32)


MODELS = {"lenet5": LeNet5}
