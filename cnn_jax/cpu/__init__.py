"""The CPU variants of the models' operations, passed in where JAX runs on a CPU.

Every model family takes its convolution and activation as attributes (`conv`, default
`flax.linen.Conv`; `act`, default `flax.linen.relu`), so that the model files say only what
the papers say. `models.from_config` gives them these instead when the backend is a CPU:

- `Conv`: `flax.linen.Conv` whose convolution and gradients run oneDNN's kernels, checked
  against XLA's, or XLA's in the layout they are fast in (`cnn_jax.cpu.conv`);
- `stored_relu`: ReLU written so that XLA's CPU backend stores its output once.
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.cpu import conv

Conv = functools.partial(nn.Conv, conv_general_dilated=conv.conv_general_dilated)


def stored_relu(x: jnp.ndarray) -> jnp.ndarray:
    """max(x, 0), stored once by XLA's CPU backend instead of recomputed in every consumer.

    XLA fuses an elementwise op of one array, such as max(x, 0), into each of its consumers,
    and with it a residual sum F(x) + x whose x is the previous block's output, and so on back
    through a stage: every weight gradient of a ResNet would re-read earlier activations. A
    select reading two arrays (x > 0 and x) is stored. `x * 0` keeps NaN as NaN, as max does;
    the gradient is relu's.
    """
    return jnp.where(x > 0, x, x * 0)


def model_ops(attributes: set[str]) -> dict[str, Any]:
    """The CPU variants of the operations among a model's `attributes` ("conv", "act")."""
    ops = {"conv": Conv, "act": stored_relu}
    return {name: op for name, op in ops.items() if name in attributes}
