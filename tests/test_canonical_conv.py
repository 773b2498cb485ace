"""The CPU-friendly convolution: lax's numbers, and no slow path inside compiled loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnn_jax.models import canonical_conv

NHWC = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize(
    "size, kernel, stride, padding",
    [(8, 3, 1, "SAME"), (9, 3, 2, "SAME"), (8, 1, 2, "SAME"), (11, 7, 2, ((3, 3), (3, 3))),
     (8, 3, 1, "VALID"), (13, 5, 2, ((2, 2), (2, 2))), (16, 3, 1, ((1, 1), (1, 1)))],
)
def test_values_and_gradients_equal_lax(size, kernel, stride, padding):
    x = jax.random.normal(jax.random.key(0), (2 * canonical_conv.CHUNK, size, size, 3))  # two chunks
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 3, 5))
    numbers = lax.conv_dimension_numbers(x.shape, w.shape, NHWC)

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.sin(conv(x, w, (stride, stride), padding, dimension_numbers=numbers)))

    expected = jax.value_and_grad(loss(lax.conv_general_dilated), (0, 1))(x, w)
    actual = jax.value_and_grad(loss(canonical_conv.conv_general_dilated), (0, 1))(x, w)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), actual, expected)


@pytest.mark.parametrize("earlier", [1.5, -0.0, np.inf, -np.inf, np.nan])
def test_after_returns_its_input_bit_for_bit(earlier):
    x = jnp.array([[1.0, -2.5], [0.0, 3e-38]])
    held = jax.jit(canonical_conv._after)(x, jnp.full((3, 2), earlier))
    np.testing.assert_array_equal(np.asarray(held).view(np.uint32), np.asarray(x).view(np.uint32))


def test_weight_gradient_of_an_infinite_gradient_matches_lax():
    """The ordering reads dy and the partial sums; an inf there must not spread further."""
    x = jax.random.normal(jax.random.key(0), (4 * canonical_conv.CHUNK, 6, 6, 2))
    w = jax.random.normal(jax.random.key(1), (3, 3, 2, 3))
    numbers = lax.conv_dimension_numbers(x.shape, w.shape, NHWC)
    dy = jnp.zeros(x.shape[:3] + (3,)).at[0, 0, 0, 0].set(jnp.inf)

    def weight_grad(conv):
        return jax.vjp(lambda w: conv(x, w, (1, 1), "SAME", dimension_numbers=numbers), w)[1](dy)[0]

    expected = weight_grad(lax.conv_general_dilated)
    actual = weight_grad(canonical_conv.conv_general_dilated)
    np.testing.assert_array_equal(np.isfinite(actual), np.isfinite(expected))
    assert np.isfinite(expected).sum() > 0


def test_grouped_convolutions_fall_back_to_lax():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
    w = jax.random.normal(jax.random.key(1), (3, 3, 2, 6))
    numbers = lax.conv_dimension_numbers(x.shape, w.shape, NHWC)
    ours = canonical_conv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=numbers, feature_group_count=2)
    np.testing.assert_array_equal(ours, lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=numbers, feature_group_count=2))


def test_weight_gradient_inside_a_loop_is_a_canonical_convolution():
    """XLA:CPU runs convolutions labelled other than NHWC x HWIO slowly inside loops."""
    x = jnp.ones((16, 8, 8, 4))
    numbers = lax.conv_dimension_numbers(x.shape, (3, 3, 4, 4), NHWC)

    def train(w):
        def step(_, w):
            grad = jax.grad(lambda w: jnp.sum(canonical_conv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=numbers) ** 2))(w)
            return w - 1e-3 * grad
        return lax.fori_loop(0, 3, step, w)

    hlo = jax.jit(train).lower(jnp.ones((3, 3, 4, 4))).compile().as_text()
    labels = [line.split("dim_labels=")[1].split(",")[0] for line in hlo.splitlines() if " convolution(" in line]
    assert labels and set(labels) == {"b01f_01io->b01f"}


@pytest.mark.parametrize("accelerator, xla_flags, expected", [
    (False, "", canonical_conv.EIGEN_CONVOLUTIONS),
    (False, "--xla_force_host_platform_device_count=8",
     "--xla_force_host_platform_device_count=8 " + canonical_conv.EIGEN_CONVOLUTIONS),
    (False, "--xla_cpu_experimental_ynn_fusion_type=individual_dot", "--xla_cpu_experimental_ynn_fusion_type=individual_dot"),
    (True, "", ""),
])
def test_eigen_convolutions_are_chosen_only_for_cpu_only_installs(monkeypatch, accelerator, xla_flags, expected):
    monkeypatch.setenv("XLA_FLAGS", xla_flags)
    monkeypatch.setattr(canonical_conv.importlib.util, "find_spec", lambda name: object() if accelerator else None)
    canonical_conv.use_eigen_convolutions_on_cpu()
    assert canonical_conv.os.environ["XLA_FLAGS"] == expected
