"""Optimizers and learning-rate schedules.

The optimizer computes an update direction; the train step scales it by -lr(step), so the
schedule (including ResNet-110's error-triggered warm-up) lives in one visible place:

    v <- momentum * v + grad + weight_decay * params
    params <- params - lr(step) * v
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from cnn_jax.errors import ConfigError


def direction(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The update direction of `config.optimizer`, before the learning rate.

    sgd: momentum SGD with L2 weight decay on every parameter (He et al. 2015, section 4.2).
    rmsprop: RMSProp as in Szegedy et al. 2016 (decay 0.9, epsilon 1.0).
    Fine-tuning: `optimizer.backbone_lr_factor` (< 1) scales the steps of every parameter
    outside the top-level modules `optimizer.head` (e.g. ("head",)), so a pretrained backbone
    learns slower than a new classifier.
    """
    base = _direction(config)
    factor = config.optimizer.get("backbone_lr_factor", 1.0)
    if factor == 1.0:
        return base
    head = tuple(config.optimizer.get("head", ()))
    if not head:
        raise ConfigError(
            "optimizer.backbone_lr_factor needs optimizer.head, the classifier's modules."
        )
    labels = lambda params: {k: jax.tree.map(lambda _: "head" if k in head else "backbone", v)
                             for k, v in params.items()}
    backbone = optax.chain(base, optax.scale(factor))
    return optax.multi_transform({"head": base, "backbone": backbone}, labels)


def _direction(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    opt = config.optimizer
    decay = optax.add_decayed_weights(opt.weight_decay)
    if opt.name == "sgd":
        return optax.chain(
            decay, optax.trace(decay=opt.momentum, nesterov=opt.get("nesterov", False))
        )
    if opt.name == "rmsprop":
        return optax.chain(
            decay,
            optax.scale_by_rms(decay=opt.get("decay", 0.9), eps=opt.get("epsilon", 1.0)),
            optax.trace(decay=opt.momentum),
        )
    raise ConfigError(f"Unknown optimizer.name {opt.name!r}; known: sgd, rmsprop.")


def schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """The learning rate per iteration, from optimizer.lr and `config.schedule`:

    piecewise (default): multiplied by schedule.factor at each of schedule.boundaries, or,
      where the config has schedule.factors, by the i-th factor at the i-th boundary
      (LeNet-5's step sizes).
    exponential: multiplied by schedule.factor every schedule.every_steps iterations
      (GoogLeNet: 0.96 every 8 epochs; Inception-v4: 0.94 every 2 epochs).
    """
    s = config.schedule
    kind = s.get("name", "piecewise")
    if kind == "piecewise":
        factors = s.get("factors") or (s.factor,) * len(s.boundaries)
        if len(factors) != len(s.boundaries):
            raise ConfigError(
                f"schedule.factors has {len(factors)} values for {len(s.boundaries)} "
                "schedule.boundaries."
            )
        steps = dict(sorted((int(b), f) for b, f in zip(s.boundaries, factors)))
        return optax.piecewise_constant_schedule(config.optimizer.lr, steps)
    if kind == "exponential":
        return optax.exponential_decay(
            config.optimizer.lr, transition_steps=s.every_steps, decay_rate=s.factor, staircase=True
        )
    raise ConfigError(f"Unknown schedule.name {kind!r}; known: piecewise, exponential.")


def learning_rate(
    config: ml_collections.ConfigDict, step: jax.Array, warming_up: jax.Array
) -> jax.Array:
    """The scheduled rate, or schedule.warmup_lr while the warm-up lasts (see
    `still_warming_up`)."""
    return jnp.where(warming_up, config.schedule.warmup_lr, schedule(config)(step))


def still_warming_up(
    config: ml_collections.ConfigDict,
    warming_up: jax.Array,
    step: jax.Array,
    batch_error: jax.Array,
) -> jax.Array:
    """ResNet-110's warm-up (He et al. 2015, section 4.2): lr 0.01 "until the training error is
    below 80% (about 400 iterations)". It ends at the first batch with an error below
    schedule.warmup_until_error percent, and at schedule.warmup_steps at the latest."""
    s = config.schedule
    return warming_up & (step + 1 < s.warmup_steps) & (batch_error >= s.warmup_until_error)
