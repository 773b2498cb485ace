"""The jit-compiled train and eval steps, the same for every model.

`TrainSteps` runs many iterations per call (`lax.fori_loop` over the on-device data set)
and returns the sums of the metrics over those iterations. Randomness is a pure function of
(seed, step): the batch order from the data key and the epoch, the crops and flips from the
augmentation key and the step.
"""

import functools
import re
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from cnn_jax.data import augment
from cnn_jax.data.in_memory import EvalSplit, TrainSplit
from cnn_jax.errors import ConfigError
from cnn_jax import sharding
from cnn_jax.training import optim
from cnn_jax.training import state as state_lib
from cnn_jax.training.state import TrainState

Metrics = dict[str, jax.Array]


def zero_sums() -> Metrics:
    """Sums over the examples of a call: loss, top-1 mistakes, examples."""
    return {
        "loss": jnp.zeros(()),
        "errors": jnp.zeros((), jnp.int32),
        "count": jnp.zeros((), jnp.int32),
    }


def stream_keys(seed: int | jax.Array) -> dict[str, jax.Array]:
    """Independent random streams derived from the seed (0 is the initialization's)."""
    root = jax.random.key(seed)
    return {
        name: jax.random.fold_in(root, i)
        for i, name in enumerate(("data", "augment", "dropout"), 1)
    }


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def apply_in_groups(
    model: nn.Module,
    variables: dict[str, Any],
    images: jax.Array,
    dropout_key: jax.Array,
    group_size: int,
) -> tuple[jax.Array, dict[str, Any]]:
    """The training-mode forward pass, with BatchNorm statistics per group of `group_size`.

    group_size 0 takes the statistics over the whole (global) batch, which is what jit over a
    sharded batch computes. A group size reproduces per-device ("ghost") statistics on any
    device count, e.g. the paper's batch of 128 on two GPUs is group_size=64: the model is
    vmapped over groups, so each group normalizes with its own mean and variance. The running
    statistics become the average over groups of what each group would store.
    """

    def apply(images, key):
        return model.apply(
            variables, images, train=True, mutable=["batch_stats", "aux"], rngs={"dropout": key}
        )

    batch = images.shape[0]
    if not group_size or group_size == batch:
        return apply(images, dropout_key)
    groups = batch // group_size
    keys = jax.random.split(dropout_key, groups)
    logits, updates = jax.vmap(apply)(images.reshape(groups, group_size, *images.shape[1:]), keys)
    ungroup = lambda x: x.reshape(batch, *x.shape[2:])
    return ungroup(logits), {
        "batch_stats": jax.tree.map(lambda x: x.mean(0), updates.get("batch_stats", {})),
        "aux": jax.tree.map(ungroup, updates.get("aux", {})),
    }


def per_replica(fn: Callable, replicas: int) -> Callable:
    """`fn(state, *shared)` for a state with a leading replica axis (seeds of one net).

    Several replicas are vmapped: one compiled program trains them all, which fills a large
    accelerator with a small net. A single replica is squeezed and expanded around `fn`
    (free reshapes in the compiled program), so a single run compiles to the plain program.
    """
    if replicas > 1:
        return lambda state, *shared: jax.vmap(lambda one: fn(one, *shared))(state)
    squeeze = lambda tree: jax.tree.map(lambda x: x[0], tree)
    expand = lambda tree: jax.tree.map(lambda x: x[None], tree)
    return lambda state, *shared: expand(fn(squeeze(state), *shared))


class TrainSteps:
    """`train_steps(state, data, num_steps) -> (state, metric sums)`: many iterations per call.

    The iterations run in one compiled `lax.fori_loop` over the on-device data, so small nets
    are not bound by Python dispatch (and on CPUs the loop is faster than separate calls).
    `state` and the sums have a leading replica axis (see `per_replica`).
    """

    def __init__(self, step_fn: Callable, mesh: Mesh, replicas: int = 1):
        replicated = sharding.replicated(mesh)

        def many_steps(state, data, num_steps):
            def body(_, carry):
                state, sums = carry
                state, metrics = step_fn(state, data)
                return state, _accumulate(sums, metrics)

            state, sums = jax.lax.fori_loop(
                0, num_steps, body, (state, zero_sums() | {"lr": jnp.zeros(())})
            )
            return state, sums | {"finite": is_finite(state)}

        self._many_steps = jax.jit(
            per_replica(many_steps, replicas),
            out_shardings=(replicated, replicated),
            donate_argnums=0,
        )
        self._compiled = None

    def compile(self, state: TrainState, data: TrainSplit) -> float:
        """Compiles ahead of time for these shapes; returns the seconds it took."""
        start = time.perf_counter()
        self._compiled = self._many_steps.lower(state, data, np.int32(1)).compile()
        return time.perf_counter() - start

    def __call__(
        self, state: TrainState, data: TrainSplit, num_steps: int
    ) -> tuple[TrainState, Metrics]:
        return (self._compiled or self._many_steps)(state, data, np.int32(num_steps))


def _accumulate(sums: Metrics, metrics: Metrics) -> Metrics:
    """Adds a step's metrics to the sums; `lr` and `finite` are the latest step's."""
    return {k: metrics[k] if k in ("lr", "finite") else sums[k] + metrics[k] for k in sums}


def is_finite(state: TrainState) -> jax.Array:
    """Whether the parameters, BN statistics and optimizer state have a finite squared norm:
    no inf or NaN, and no value beyond about 1e19, which no float32 net that still trains
    reaches (one reduction, inside the compiled call, so a diverged state is never saved)."""
    trees = (state.params, state.batch_stats, state.opt_state)
    floats = [x for x in jax.tree.leaves(trees) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.isfinite(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in floats))


def make_update(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    config: ml_collections.ConfigDict,
    mesh: Mesh,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]:
    """`update(state, images, labels) -> (state, metrics)`: one SGD iteration on a prepared batch.

    The loss is the cross-entropy plus `train.aux_loss_weight` times that of every auxiliary
    classifier the model sows (GoogLeNet); weight decay is in the optimizer. With
    `train.ema_decay` > 0 the average of the parameters follows each update.
    """
    batch_size = config.train.batch_size
    sharding.check_divisible("train.batch_size", batch_size, mesh)
    aux_weight = config.train.get("aux_loss_weight", 0.0)
    batch_sharding = sharding.sharded(mesh)
    bn_group_size = config.model.get("bn_group_size", 0)
    ema_decay = state_lib.ema_decay(config)
    if bn_group_size and batch_size % bn_group_size:
        raise ConfigError(
            f"model.bn_group_size={bn_group_size} does not divide train.batch_size={batch_size}."
        )

    def loss_fn(params, state: TrainState, images, labels):
        variables = {"params": params, "batch_stats": state.batch_stats}
        dropout_key = jax.random.fold_in(stream_keys(state.seed)["dropout"], state.step)
        logits, updates = apply_in_groups(model, variables, images, dropout_key, bn_group_size)
        loss = cross_entropy(logits, labels).mean()
        aux_logits = jax.tree.leaves(updates.get("aux", {}))
        objective = loss + aux_weight * sum(cross_entropy(a, labels).mean() for a in aux_logits)
        return objective, (loss, logits, updates.get("batch_stats", {}))

    def update(
        state: TrainState, images: jax.Array, labels: jax.Array
    ) -> tuple[TrainState, Metrics]:
        images = jax.lax.with_sharding_constraint(images, batch_sharding)
        labels = jax.lax.with_sharding_constraint(labels, batch_sharding)
        grads, (loss, logits, batch_stats) = jax.grad(loss_fn, has_aux=True)(
            state.params, state, images, labels
        )
        direction, opt_state = optimizer.update(grads, state.opt_state, state.params)
        lr = optim.learning_rate(config, state.step, state.warming_up)
        params = jax.tree.map(lambda p, d: p - lr * d, state.params, direction)

        errors = jnp.sum(jnp.argmax(logits, -1) != labels)
        batch_error = 100.0 * errors / batch_size
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            batch_stats=batch_stats,
            opt_state=opt_state,
            warming_up=optim.still_warming_up(config, state.warming_up, state.step, batch_error),
            ema_params=state_lib.update_average(state.ema_params, params, ema_decay)
            if ema_decay
            else {},
        )
        metrics = {"loss": loss * batch_size, "errors": errors, "count": jnp.asarray(batch_size)}
        return new_state, metrics | {"lr": lr}

    return update


def make_train_steps(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    config: ml_collections.ConfigDict,
    mesh: Mesh,
    replicas: int = 1,
) -> TrainSteps:
    """The train step on in-memory data (batch drawn and augmented on the device), run many
    iterations per call."""
    update = make_update(model, optimizer, config, mesh)

    def train_step(state: TrainState, data: TrainSplit) -> tuple[TrainState, Metrics]:
        keys = stream_keys(state.seed)
        images, labels = data.batch(keys["data"], state.step, config.train.batch_size)
        images = augment.train_view(
            jax.random.fold_in(keys["augment"], state.step),
            images,
            state.pixel_mean,
            padding=config.augment.crop_padding,
            flip=config.augment.flip,
        )
        return update(state, augment.resize(images, config.augment.get("resize", 0)), labels)

    return TrainSteps(train_step, mesh, replicas)


def make_stream_step(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    config: ml_collections.ConfigDict,
    mesh: Mesh,
    replicas: int = 1,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]:
    """The compiled train step on a batch prepared by the host (streaming data sets)."""
    replicated = sharding.replicated(mesh)
    update = make_update(model, optimizer, config, mesh)

    def checked_update(state: TrainState, images: jax.Array, labels: jax.Array):
        state, metrics = update(state, images, labels)
        return state, metrics | {"finite": is_finite(state)}

    return jax.jit(
        per_replica(checked_update, replicas),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )


def batch_sums(model: nn.Module, state: TrainState, images, labels, mask) -> Metrics:
    """Evaluation sums of one batch: loss, top-1 and top-5 mistakes, examples.

    Images of shape [batch, crops, H, W, C] (10-crop testing) are classified by their crops'
    mean softmax. The net runs with the averaged parameters where the run keeps an average.
    """
    variables = state.eval_variables
    if images.ndim == 5:
        batch, crops = images.shape[:2]
        logits = model.apply(
            variables, images.reshape(batch * crops, *images.shape[2:]), train=False
        )
        per_crop = jax.nn.log_softmax(logits.reshape(batch, crops, -1))
        log_probs = jax.nn.logsumexp(per_crop, axis=1) - jnp.log(crops)  # log of the mean softmax
    else:
        log_probs = jax.nn.log_softmax(model.apply(variables, images, train=False))
    losses = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
    top5 = jax.lax.top_k(log_probs, min(5, log_probs.shape[-1]))[1]
    return {
        "loss": jnp.where(mask, losses, 0.0).sum(),
        "errors": (mask & (jnp.argmax(log_probs, -1) != labels)).sum(),
        "top5_errors": (mask & ~jnp.any(top5 == labels[:, None], axis=-1)).sum(),
        "count": mask.sum(),
    }


def make_evaluate(
    model: nn.Module, mesh: Mesh, replicas: int = 1, resize: int = 0
) -> Callable[[Any, EvalSplit], Metrics]:
    """Returns the compiled `evaluate(state, split) -> metric sums` over a whole in-memory split
    (its images resized to `resize` pixels if given)."""

    def evaluate(state: TrainState, split: EvalSplit) -> Metrics:
        def add_batch(sums, batch):
            images, labels, mask = batch
            images = augment.resize(augment.normalize(images, state.pixel_mean), resize)
            return jax.tree.map(jnp.add, sums, batch_sums(model, state, images, labels, mask)), None

        zeros = zero_sums() | {"top5_errors": jnp.zeros((), jnp.int32)}
        sums, _ = jax.lax.scan(add_batch, zeros, (split.images, split.labels, split.mask))
        return sums

    return jax.jit(per_replica(evaluate, replicas), out_shardings=sharding.replicated(mesh))


def make_evaluate_batch(model: nn.Module, mesh: Mesh, replicas: int = 1) -> Callable[..., Metrics]:
    """Returns the compiled `evaluate_batch(state, images, labels, mask) -> metric sums` for
    batches prepared by the host."""
    evaluate = per_replica(functools.partial(batch_sums, model), replicas)
    return jax.jit(evaluate, out_shardings=sharding.replicated(mesh))


def make_diagnostics(model: nn.Module, mesh: Mesh, replicas: int = 1) -> Callable[..., Metrics]:
    """Returns the compiled `diagnostics(state, images, labels)`: on one batch, the gradient
    norm of each stage's parameters and, in residual nets, the mean ||F(x)|| / ||x|| of each
    stage's blocks. They tell vanishing gradients (small early-stage norms) from the
    optimisation difficulty that He et al. 2015 argue degrades plain nets."""

    def diagnostics(state: TrainState, images, labels) -> Metrics:
        def loss_fn(params):
            variables = {"params": params, "batch_stats": state.batch_stats}
            logits, updates = model.apply(
                variables, images, train=True, mutable=["batch_stats", "diagnostics"]
            )
            return cross_entropy(logits, labels).mean(), updates.get("diagnostics", {})

        grads, sown = jax.grad(loss_fn, has_aux=True)(state.params)
        out = {
            f"grad_norm/{stage}": optax.tree.norm(tree) for stage, tree in by_stage(grads).items()
        }
        for stage, tree in by_stage(sown).items():
            out[f"residual_ratio/{stage}"] = jnp.mean(
                jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])
            )
        return out

    return jax.jit(per_replica(diagnostics, replicas), out_shardings=sharding.replicated(mesh))


def by_stage(tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Top-level entries grouped by stage: "stage2_block3", "stage2_blocks" -> "stage2";
    "stem_conv", "stem_bn" -> "stem"; other names stay as they are."""
    groups: dict[str, dict[str, Any]] = {}
    for name, value in tree.items():
        stage = re.sub(r"^(stem|stage\d+)_.*$", r"\1", name)
        groups.setdefault(stage, {})[name] = value
    return groups


def summarize(sums: Metrics) -> dict[str, float]:
    """Metric sums -> mean loss and (top-1, and where counted top-5) error in percent."""
    count = max(int(sums["count"]), 1)
    summary = {"loss": float(sums["loss"]) / count, "error": 100.0 * float(sums["errors"]) / count}
    if "top5_errors" in sums:
        summary["top5_error"] = 100.0 * float(sums["top5_errors"]) / count
    return summary
