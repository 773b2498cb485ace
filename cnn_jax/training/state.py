"""The train state: everything a checkpoint holds, as one pytree.

With `train.ema_decay` > 0 it also holds an exponential moving average of the parameters,
which evaluation uses (`eval_variables`); with 0 that field is empty and the state is
exactly the plain one.
"""

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from cnn_jax import sharding


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: iterations done
    seed: jax.Array  # int32 scalar: the run's seed; every random stream derives from it
    params: Any
    batch_stats: Any  # BatchNorm running statistics ({} for nets without BN)
    opt_state: optax.OptState
    pixel_mean: jax.Array  # (H, W, C) training-set mean the inputs are normalized with
    warming_up: jax.Array  # bool scalar: the learning-rate warm-up is still on
    ema_params: Any = flax.struct.field(default_factory=dict)  # averaged params ({} when off)

    @property
    def variables(self) -> dict[str, Any]:
        """The model's variables being trained, as `module.apply` takes them."""
        return {"params": self.params, "batch_stats": self.batch_stats}

    @property
    def eval_variables(self) -> dict[str, Any]:
        """The variables evaluation uses: the averaged parameters when the run keeps an average
        (`train.ema_decay` > 0), else the trained ones. BatchNorm statistics are running
        averages already and are used as they are."""
        return {"params": self.ema_params or self.params, "batch_stats": self.batch_stats}


def ema_decay(config: ml_collections.ConfigDict) -> float:
    """`train.ema_decay` (0, or absent from older configs: no average)."""
    return float(config.train.get("ema_decay", 0.0))


def update_average(average: Any, params: Any, decay: float) -> Any:
    """One step of the exponential moving average: decay * average + (1 - decay) * params.

    GoogLeNet (Szegedy et al. 2014, section 6) evaluated Polyak-averaged parameters, and
    Inception-v4 (Szegedy et al. 2016, section 4) "a running average of the parameters
    computed over time"; this average stands for both. It starts at the initial parameters.
    """
    return jax.tree.map(lambda a, p: decay * a + (1.0 - decay) * p, average, params)


def create(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    config: ml_collections.ConfigDict,
    pixel_mean: jax.Array,
    mesh: Mesh,
    input_shape: tuple[int, int, int] | None = None,
) -> TrainState:
    """Initializes a replicated train state from `config.seed` for inputs of `input_shape`
    (default: the shape of `pixel_mean`)."""
    input_shape = input_shape or pixel_mean.shape

    def init() -> TrainState:
        key = jax.random.fold_in(jax.random.key(config.seed), 0)
        variables = model.init(key, jnp.zeros((1, *input_shape)), train=False)
        params = variables["params"]
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            seed=jnp.asarray(config.seed, jnp.int32),
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=optimizer.init(params),
            pixel_mean=jnp.asarray(pixel_mean, jnp.float32),
            warming_up=jnp.asarray(config.schedule.warmup_steps > 0),
            ema_params=jax.tree.map(jnp.copy, params) if ema_decay(config) else {},
        )

    return jax.jit(init, out_shardings=sharding.replicated(mesh))()


def abstract(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    config: ml_collections.ConfigDict,
    input_shape: tuple[int, int, int],
    mean_shape: tuple[int, ...],
    mesh: Mesh,
) -> TrainState:
    """Shapes, dtypes and (replicated) shardings of the train state, without computing it."""
    mean = jax.ShapeDtypeStruct(mean_shape, jnp.float32)
    shapes = jax.eval_shape(lambda m: create(model, optimizer, config, m, mesh, input_shape), mean)
    replicated = sharding.replicated(mesh)
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), shapes
    )


def stack(states: list[TrainState]) -> TrainState:
    """Replicas (seeds) of one net as one state with a leading replica axis."""
    return jax.tree.map(lambda *x: jnp.stack(x), *states)


def unstack(state: TrainState) -> list[TrainState]:
    """The inverse of `stack`."""
    replicas = state.step.shape[0]
    return [jax.tree.map(lambda x: x[i], state) for i in range(replicas)]


def num_params(params: Any) -> int:
    return sum(x.size for x in jax.tree.leaves(params))
