"""The paper's schedule and update rule (He et al. 2015, section 4.2)."""

import jax.numpy as jnp
import numpy as np

from cnn_jax.training import optim
from experiments import configs


def test_learning_rate_divided_by_10_at_32k_and_48k():
    config = configs.get_config("cifar_resnet56")
    lr = lambda step: float(optim.learning_rate(config, jnp.asarray(step), jnp.asarray(False)))
    np.testing.assert_allclose([lr(0), lr(31_999)], [0.1, 0.1])
    np.testing.assert_allclose(
        [lr(32_000), lr(47_999), lr(48_000), lr(63_999)], [0.01, 0.01, 0.001, 0.001]
    )


def test_resnet110_warm_up_ends_below_80_percent_error_or_at_400_steps():
    config = configs.get_config("cifar_resnet110")
    np.testing.assert_allclose(
        float(optim.learning_rate(config, jnp.asarray(5), jnp.asarray(True))), 0.01
    )
    still = lambda step, error: bool(
        optim.still_warming_up(config, jnp.asarray(True), jnp.asarray(step), jnp.asarray(error))
    )
    assert still(10, 85.0)
    assert not still(10, 79.0)  # the training error fell below 80%
    assert not still(399, 95.0)  # 400 iterations at most
    assert not bool(
        optim.still_warming_up(config, jnp.asarray(False), jnp.asarray(1), jnp.asarray(99.0))
    )


def test_sgd_update_is_momentum_on_gradient_plus_weight_decay():
    config = configs.get_config("cifar_resnet20")
    transform = optim.direction(config)
    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([0.5, 0.5])}
    state = transform.init(params)
    d1, state = transform.update(grads, state, params)
    np.testing.assert_allclose(d1["w"], grads["w"] + 1e-4 * params["w"], rtol=1e-6)
    d2, _ = transform.update(grads, state, params)
    np.testing.assert_allclose(d2["w"], 0.9 * d1["w"] + grads["w"] + 1e-4 * params["w"], rtol=1e-6)


def test_a_factor_per_boundary():
    config = configs.get_config("cifar_resnet20", {"schedule.boundaries": (10, 20)})
    with config.unlocked():
        config.schedule.factors = (0.5, 0.2)
    lr = lambda step: float(optim.schedule(config)(step))
    np.testing.assert_allclose([lr(9), lr(10), lr(19), lr(20)], [0.1, 0.05, 0.05, 0.01])
