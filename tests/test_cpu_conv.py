"""The CPU convolution: lax's numbers from oneDNN's kernels or XLA's, and no slow path in loops."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnn_jax.models import canonical_conv, cpu_conv
from cnn_jax.native import onednn

NHWC = ("NHWC", "HWIO", "NHWC")
ONEDNN_CALL = 'custom_call_target="cnn_jax_onednn_conv'
NEEDS_ONEDNN = "needs oneDNN on a CPU: apt-get install g++ libdnnl-dev"


def skip_without_onednn():
    """Skips where JAX runs on an accelerator or oneDNN's kernels cannot be built."""
    if jax.default_backend() != "cpu" or not onednn.available():
        pytest.skip(NEEDS_ONEDNN)


@pytest.fixture
def with_onednn():
    skip_without_onednn()


@pytest.fixture(params=["onednn", "xla"])
def cpu_kernels(request, monkeypatch):
    """Runs a test with oneDNN's kernels, then with XLA's (the fallback without oneDNN)."""
    if request.param == "onednn":
        skip_without_onednn()
    else:
        monkeypatch.setattr(onednn, "available", lambda: False)
    return request.param


@pytest.fixture
def fresh_onednn(monkeypatch, tmp_path):
    """`onednn.available()` decided anew, building into an empty cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    onednn.available.cache_clear()
    yield
    onednn.available.cache_clear()


def conv_loss(conv, stride, padding):
    def loss(x, w):
        numbers = lax.conv_dimension_numbers(x.shape, w.shape, NHWC)
        return jnp.sum(jnp.sin(conv(x, w, (stride, stride), padding, dimension_numbers=numbers)))

    return loss


@pytest.mark.parametrize(
    "size, kernel, stride, padding",
    [
        (8, 3, 1, "SAME"),
        (9, 3, 2, "SAME"),
        (8, 1, 2, "SAME"),
        (11, 7, 2, ((3, 3), (3, 3))),
        (8, 3, 1, "VALID"),
        (13, 5, 2, ((2, 2), (2, 2))),
        (16, 3, 1, ((1, 1), (1, 1))),
        (10, 3, 1, ((2, 0), (1, 3))),
    ],
)
def test_values_and_gradients_equal_lax(cpu_kernels, size, kernel, stride, padding):
    x = jax.random.normal(
        jax.random.key(0), (2 * canonical_conv.CHUNK, size, size, 3)
    )  # two chunks
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 3, 5))
    expected = jax.value_and_grad(conv_loss(lax.conv_general_dilated, stride, padding), (0, 1))(
        x, w
    )
    actual = jax.value_and_grad(conv_loss(cpu_conv.conv_general_dilated, stride, padding), (0, 1))(
        x, w
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), actual, expected
    )


def train_loop_hlo(steps: int = 3) -> str:
    """The compiled text of a small SGD loop over one convolution, its input and its kernel."""

    def train(x, w):
        def step(_, xw):
            loss = lambda x, w: jnp.sum(
                cpu_conv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC) ** 2
            )
            return jax.tree.map(lambda a, g: a - 1e-3 * g, xw, jax.grad(loss, (0, 1))(*xw))

        return lax.fori_loop(0, steps, step, (x, w))

    return jax.jit(train).lower(jnp.ones((16, 8, 8, 4)), jnp.ones((3, 3, 4, 4))).compile().as_text()


def test_onednn_runs_the_convolution_and_both_gradients_inside_a_loop(with_onednn):
    hlo = train_loop_hlo()
    for target in onednn.TARGETS:
        assert f'custom_call_target="{target}"' in hlo
    assert " convolution(" not in hlo


def test_without_onednn_the_gradients_inside_a_loop_are_canonical_convolutions(monkeypatch):
    """XLA:CPU runs convolutions labelled other than NHWC x HWIO slowly inside loops."""
    monkeypatch.setattr(onednn, "available", lambda: False)
    hlo = train_loop_hlo()
    labels = [
        line.split("dim_labels=")[1].split(",")[0]
        for line in hlo.splitlines()
        if " convolution(" in line
    ]
    assert labels and set(labels) == {"b01f_01io->b01f"}
    assert ONEDNN_CALL not in hlo


def test_several_devices_keep_xla_convolutions(monkeypatch):
    """XLA cannot split a foreign kernel over devices, so sharded programs do not call it."""
    monkeypatch.setattr(jax, "device_count", lambda: 8)
    assert ONEDNN_CALL not in train_loop_hlo()


def test_bfloat16_convolutions_keep_xla_kernels():
    x, w = jnp.ones((2, 8, 8, 4), jnp.bfloat16), jnp.ones((3, 3, 4, 4), jnp.bfloat16)
    hlo = (
        jax.jit(
            lambda x, w: cpu_conv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)
        )
        .lower(x, w)
        .as_text()
    )
    assert "cnn_jax_onednn" not in hlo


def test_vmapped_convolutions_equal_lax(cpu_kernels):
    """Seeds trained together (vmap over replicas) run each replica's convolution in turn."""
    x = jax.random.normal(jax.random.key(0), (3, 4, 8, 8, 2))
    w = jax.random.normal(jax.random.key(1), (3, 3, 3, 2, 4))
    grads = lambda conv: jax.vmap(jax.grad(conv_loss(conv, 1, "SAME"), (0, 1)))(x, w)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
        grads(cpu_conv.conv_general_dilated),
        grads(lax.conv_general_dilated),
    )


def test_a_failed_build_warns_once_and_falls_back_to_xla(fresh_onednn, monkeypatch, caplog):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    with caplog.at_level(logging.WARNING, logger=onednn.__name__):
        assert not onednn.available()
        assert not onednn.available()
    assert len(caplog.records) == 1
    assert "no C++ compiler" in caplog.text and "apt-get install g++ libdnnl-dev" in caplog.text
    x, w = jnp.ones((2, 6, 6, 3)), jnp.ones((3, 3, 3, 2))
    np.testing.assert_allclose(
        cpu_conv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC),
        lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC),
    )


def test_a_library_that_no_longer_loads_is_rebuilt(with_onednn, tmp_path):
    """E.g. one built against a oneDNN version that has since been replaced."""
    path = tmp_path / "onednn_conv.so"
    path.write_bytes(b"not a shared library")
    library = onednn.load(path)
    assert all(hasattr(library, name) for name in onednn.TARGETS)
    assert path.read_bytes()[:4] == b"\x7fELF"


def test_a_compiler_error_is_reported(fresh_onednn, monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "false")  # exits 1 and says nothing
    with pytest.raises(onednn.BuildError, match="failed without a message"):
        onednn.build(tmp_path / "library.so")
    assert not (tmp_path / "library.so").exists()


@pytest.mark.parametrize("stderr, expected", [
    ("onednn_conv.cc:22:10: fatal error: oneapi/dnnl/dnnl.hpp: No such file or directory\n"
     "compilation terminated.",
     "onednn_conv.cc:22:10: fatal error: oneapi/dnnl/dnnl.hpp: No such file or directory"),
    ("/usr/bin/ld: cannot find -ldnnl: No such file or directory\n"
     "collect2: error: ld returned 1 exit status",
     "/usr/bin/ld: cannot find -ldnnl: No such file or directory"),
])
def test_a_failed_build_names_what_is_missing(stderr, expected):
    assert onednn._first_error(stderr) == expected


def test_the_compiler_command_may_carry_words_and_old_builds_are_removed(
    with_onednn, monkeypatch, tmp_path
):
    monkeypatch.setenv("CXX", "env c++")  # like `ccache g++`
    old = tmp_path / "onednn_conv-0123456789abcdef.so"
    old.write_bytes(b"an earlier version")
    onednn.build(tmp_path / "onednn_conv-fedcba9876543210.so")
    assert [p.name for p in tmp_path.iterdir()] == ["onednn_conv-fedcba9876543210.so"]


def test_onednn_can_be_switched_off(fresh_onednn, monkeypatch, caplog):
    monkeypatch.setenv("CNN_JAX_ONEDNN", "0")
    with caplog.at_level(logging.WARNING, logger=onednn.__name__):
        assert not onednn.available()
    assert not caplog.records


@pytest.mark.parametrize("earlier", [1.5, -0.0, np.inf, -np.inf, np.nan])
def test_after_returns_its_input_bit_for_bit(earlier):
    x = jnp.array([[1.0, -2.5], [0.0, 3e-38]])
    held = jax.jit(canonical_conv._after)(x, jnp.full((3, 2), earlier))
    np.testing.assert_array_equal(np.asarray(held).view(np.uint32), np.asarray(x).view(np.uint32))


def test_weight_gradient_of_an_infinite_gradient_matches_lax(monkeypatch):
    """The fallback's ordering reads dy and the partial sums: an inf there must not spread."""
    monkeypatch.setattr(onednn, "available", lambda: False)
    x = jax.random.normal(jax.random.key(0), (4 * canonical_conv.CHUNK, 6, 6, 2))
    w = jax.random.normal(jax.random.key(1), (3, 3, 2, 3))
    dy = jnp.zeros(x.shape[:3] + (3,)).at[0, 0, 0, 0].set(jnp.inf)

    def weight_grad(conv):
        return jax.vjp(lambda w: conv(x, w, (1, 1), "SAME", dimension_numbers=NHWC), w)[1](dy)[0]

    expected = weight_grad(lax.conv_general_dilated)
    actual = weight_grad(cpu_conv.conv_general_dilated)
    np.testing.assert_array_equal(np.isfinite(actual), np.isfinite(expected))
    assert np.isfinite(expected).sum() > 0


def test_grouped_convolutions_fall_back_to_lax():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
    w = jax.random.normal(jax.random.key(1), (3, 3, 2, 6))
    grouped = lambda conv: conv(x, w, (1, 1), "SAME", dimension_numbers=NHWC, feature_group_count=2)
    np.testing.assert_array_equal(
        grouped(cpu_conv.conv_general_dilated), grouped(lax.conv_general_dilated)
    )


@pytest.mark.parametrize(
    "accelerator, xla_flags, expected",
    [
        (False, "", canonical_conv.EIGEN_CONVOLUTIONS),
        (
            False,
            "--xla_force_host_platform_device_count=8",
            "--xla_force_host_platform_device_count=8 " + canonical_conv.EIGEN_CONVOLUTIONS,
        ),
        (
            False,
            "--xla_cpu_experimental_ynn_fusion_type=individual_dot",
            "--xla_cpu_experimental_ynn_fusion_type=individual_dot",
        ),
        (True, "", ""),
    ],
)
def test_eigen_convolutions_are_chosen_only_for_cpu_only_installs(
    monkeypatch, accelerator, xla_flags, expected
):
    monkeypatch.setenv("XLA_FLAGS", xla_flags)
    monkeypatch.setattr(
        canonical_conv.importlib.util, "find_spec", lambda name: object() if accelerator else None
    )
    canonical_conv.use_eigen_convolutions_on_cpu()
    assert canonical_conv.os.environ["XLA_FLAGS"] == expected
