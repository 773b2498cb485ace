"""cnn_jax.models.batch_norm.BatchNorm is flax.linen.BatchNorm with a hand-written backward."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.models import layers
from cnn_jax.models.batch_norm import BatchNorm


def _inputs(dtype=jnp.float32):
    x = np.random.default_rng(0).normal(2.0, 3.0, (6, 5, 5, 4)).astype(np.float32)
    params = {"scale": jnp.array([1.0, -2.0, 0.5, 3.0]), "bias": jnp.array([0.0, 1.0, -1.0, 2.0])}
    stats = {"mean": jnp.array([0.1, 0.2, 0.3, 0.4]), "var": jnp.array([1.0, 2.0, 3.0, 4.0])}
    return jnp.asarray(x, dtype), params, stats


def _loss(module, params, stats, x):
    """A loss of the output and of the updated running statistics, so every path is exercised."""
    out, updates = module.apply({"params": params, "batch_stats": stats}, x, mutable=["batch_stats"])
    weights = jnp.sin(jnp.arange(out.size, dtype=jnp.float32)).reshape(out.shape)
    new = updates["batch_stats"]
    loss = (out.astype(jnp.float32) * weights).sum() + 3 * new["mean"].sum() + (new["var"] ** 2).sum()
    return loss, (out, new)


def _flax(**kwargs):
    return nn.BatchNorm(momentum=0.9, epsilon=1e-5, **kwargs)


def test_training_values_statistics_and_gradients_match_flax():
    x, params, stats = _inputs()
    grad = jax.value_and_grad(_loss, argnums=(1, 3), has_aux=True)
    (loss, (out, new)), (g_params, g_x) = grad(BatchNorm(), params, stats, x)
    (ref_loss, (ref_out, ref_new)), (ref_params, ref_x) = grad(_flax(use_running_average=False), params, stats, x)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
    for name in ("mean", "var"):
        np.testing.assert_allclose(new[name], ref_new[name], rtol=1e-6)
    for name in ("scale", "bias"):
        np.testing.assert_allclose(g_params[name], ref_params[name], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g_x, ref_x, rtol=1e-4, atol=1e-5)


def test_normalized_output_has_zero_mean_unit_variance_before_scale_and_bias():
    x, params, stats = _inputs()
    out, _ = BatchNorm().apply({"params": {"scale": jnp.ones(4), "bias": jnp.zeros(4)}, "batch_stats": stats},
                               x, mutable=["batch_stats"])
    np.testing.assert_allclose(out.mean((0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.var((0, 1, 2)), 1.0, rtol=1e-4)


def test_inference_uses_the_running_statistics_like_flax():
    x, params, stats = _inputs()
    variables = {"params": params, "batch_stats": stats}
    out = BatchNorm(use_running_average=True).apply(variables, x)
    ref = _flax(use_running_average=True).apply(variables, x)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    expected = (x - stats["mean"]) / jnp.sqrt(stats["var"] + 1e-5) * params["scale"] + params["bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_variables_have_flax_names_shapes_and_initial_values():
    x, _, _ = _inputs()
    ours = BatchNorm().init(jax.random.key(0), x)
    flax_variables = _flax(use_running_average=False).init(jax.random.key(0), x)
    assert jax.tree.structure(ours) == jax.tree.structure(flax_variables)
    jax.tree.map(np.testing.assert_array_equal, ours, flax_variables)


def test_initialization_leaves_running_statistics_alone():
    x, params, stats = _inputs()
    variables = BatchNorm().init(jax.random.key(0), x)
    np.testing.assert_array_equal(variables["batch_stats"]["mean"], jnp.zeros(4))
    np.testing.assert_array_equal(variables["batch_stats"]["var"], jnp.ones(4))


def test_bfloat16_inputs_give_bfloat16_outputs_and_float32_statistics():
    x, params, stats = _inputs(jnp.bfloat16)
    module = BatchNorm(dtype=jnp.bfloat16)
    (_, (out, new)), g_x = jax.value_and_grad(_loss, argnums=3, has_aux=True)(module, params, stats, x)
    assert out.dtype == jnp.bfloat16 and g_x.dtype == jnp.bfloat16
    assert new["mean"].dtype == new["var"].dtype == jnp.float32
    ref_out, _ = _flax(use_running_average=False, dtype=jnp.bfloat16).apply(
        {"params": params, "batch_stats": stats}, x, mutable=["batch_stats"]
    )
    np.testing.assert_allclose(out.astype(np.float32), ref_out.astype(np.float32), atol=0.05)


def test_groups_under_vmap_normalize_separately_like_flax():
    """Ghost batch norm (`steps.apply_in_groups`) vmaps the model over groups of the batch."""
    x, params, stats = _inputs()
    groups = x.reshape(2, 3, *x.shape[1:])

    def grouped(module):
        def loss(params, groups):
            return jax.vmap(lambda g: _loss(module, params, stats, g)[0])(groups).sum()

        return jax.value_and_grad(loss, argnums=(0, 1))(params, groups)

    (loss, (g_params, g_x)) = grouped(BatchNorm())
    (ref_loss, (ref_params, ref_x)) = grouped(_flax(use_running_average=False))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    np.testing.assert_allclose(g_params["scale"], ref_params["scale"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g_x, ref_x, rtol=1e-4, atol=1e-5)


def test_nan_inputs_give_nan_outputs():
    x, params, stats = _inputs()
    x = x.at[0, 0, 0, 1].set(jnp.nan)
    out, _ = BatchNorm().apply({"params": params, "batch_stats": stats}, x, mutable=["batch_stats"])
    assert np.isnan(np.asarray(out[..., 1])).all() and np.isfinite(np.asarray(out[..., 0])).all()


@pytest.mark.parametrize("train", [True, False])
def test_the_models_batch_norm_is_this_one(train):
    module = layers.batch_norm(train)()
    assert isinstance(module, BatchNorm)
    assert (module.use_running_average, module.momentum, module.epsilon) == (not train, 0.9, 1e-5)
