"""The CPU convolution: lax's numbers from oneDNN's kernels or XLA's, and no slow path in loops."""

import logging
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnn_jax import models
from cnn_jax.data import augment, in_memory
from cnn_jax.data.datasets import Split
from cnn_jax.cpu import canonical_conv, xla_flags
from cnn_jax.cpu import conv as cpu_conv
from cnn_jax.native import build, check, onednn
from cnn_jax import sharding
from cnn_jax.training import optim, steps
from cnn_jax.training import state as state_lib
from experiments import configs
from tests.conftest import GATE_SUMMARIES, ROOT

NHWC = ("NHWC", "HWIO", "NHWC")
NEEDS_ONEDNN = 'needs oneDNN on a CPU: a C++ compiler and pip install "cnn_jax[cpu]"'


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


ONEDNN_KERNELS = ["forward", "input_grad", "weight_grad"]


def spy_on_kernels(monkeypatch) -> list[str]:
    """Records, as programs are traced, each call of oneDNN's kernels (forward, input_grad,
    weight_grad) and of XLA's canonical gradient convolutions (grads)."""
    called = []

    def spy(module, name):
        function = getattr(module, name)

        def recorded(*args, **kwargs):
            called.append(name)
            return function(*args, **kwargs)

        monkeypatch.setattr(module, name, recorded)

    for name in ONEDNN_KERNELS:
        spy(onednn, name)
    spy(canonical_conv, "grads")
    return called


def kernels_of_a_train_loop(monkeypatch, steps: int = 3) -> list[str]:
    """The CPU kernels a small SGD loop over one convolution calls."""
    called = spy_on_kernels(monkeypatch)

    def train(x, w):
        def step(_, xw):
            loss = lambda x, w: jnp.sum(
                cpu_conv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC) ** 2
            )
            return jax.tree.map(lambda a, g: a - 1e-3 * g, xw, jax.grad(loss, (0, 1))(*xw))

        return lax.fori_loop(0, steps, step, (x, w))

    jax.jit(train).lower(jnp.ones((16, 8, 8, 4)), jnp.ones((3, 3, 4, 4)))
    return sorted(set(called))


def test_onednn_runs_the_convolution_and_both_gradients_inside_a_loop(with_onednn, monkeypatch):
    assert kernels_of_a_train_loop(monkeypatch) == ONEDNN_KERNELS


def test_without_onednn_the_gradients_inside_a_loop_are_canonical_convolutions(monkeypatch):
    """XLA:CPU runs convolutions laid out other than NHWC x HWIO slowly inside loops."""
    monkeypatch.setattr(onednn, "available", lambda: False)
    assert kernels_of_a_train_loop(monkeypatch) == ["grads"]


def test_several_devices_keep_xla_convolutions(monkeypatch):
    """XLA cannot split a foreign kernel over devices, so sharded programs do not call it."""
    monkeypatch.setattr(jax, "device_count", lambda: 8)
    assert not set(kernels_of_a_train_loop(monkeypatch)) & set(ONEDNN_KERNELS)


def test_bfloat16_convolutions_keep_xla_kernels(monkeypatch):
    called = spy_on_kernels(monkeypatch)
    x, w = jnp.ones((2, 8, 8, 4), jnp.bfloat16), jnp.ones((3, 3, 4, 4), jnp.bfloat16)
    conv = lambda x, w: cpu_conv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)
    jax.jit(jax.grad(lambda x, w: jnp.sum(conv(x, w)).astype(jnp.float32))).lower(x, w)
    assert not set(called) & set(ONEDNN_KERNELS)


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
    assert "no C++ compiler" in caplog.text and 'pip install "cnn_jax[cpu]"' in caplog.text
    x, w = jnp.ones((2, 6, 6, 3)), jnp.ones((3, 3, 3, 2))
    np.testing.assert_allclose(
        cpu_conv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC),
        lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC),
    )


def test_a_library_that_no_longer_loads_is_rebuilt(with_onednn, tmp_path):
    """E.g. one built against a oneDNN version that has since been replaced."""
    path = tmp_path / "onednn_conv.so"
    path.write_bytes(b"not a shared library")
    library = build.load(path)
    assert all(hasattr(library, name) for name in onednn.TARGETS)
    assert path.read_bytes()[:4] == b"\x7fELF"


def test_a_compiler_error_is_reported(fresh_onednn, monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "false")  # exits 1 and says nothing
    with pytest.raises(build.BuildError, match="failed without a message"):
        build.build(tmp_path / "library.so")
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
    assert build.first_error(stderr) == expected


def test_a_build_replaces_only_its_own_environments_older_libraries(
    with_onednn, monkeypatch, tmp_path
):
    """Two virtual environments (say, two jaxlib versions) share the cache without
    rebuilding each other out of it; the compiler command may carry words (`ccache g++`)."""
    monkeypatch.setenv("CXX", "env c++")
    ours, theirs = build.environment_key(), "0badc0de"
    older = tmp_path / f"onednn_conv-{ours}-0123456789abcdef.so"
    other_environment = tmp_path / f"onednn_conv-{theirs}-0123456789abcdef.so"
    for path in (older, other_environment):
        path.write_bytes(b"an earlier build")
    build.build(tmp_path / f"onednn_conv-{ours}-fedcba9876543210.so")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [other_environment.name, f"onednn_conv-{ours}-fedcba9876543210.so"]
    )


def test_a_cache_others_can_write_to_is_not_loaded_from(
    with_onednn, fresh_onednn, tmp_path, caplog
):
    cache = tmp_path / "cnn_jax" / "native"
    cache.mkdir(parents=True)
    cache.chmod(0o777)
    planted = build.library_path()
    planted.write_bytes(b"someone else's code")
    with caplog.at_level(logging.WARNING, logger=build.__name__):
        library = build.load_library()
    assert "not private" in caplog.text and hasattr(library, onednn.TARGETS[0])
    assert planted.read_bytes() == b"someone else's code"


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_a_library_of_another_user_is_refused(with_onednn, fresh_onednn, tmp_path):
    build.load_library()  # a private cache with this user's library
    path = build.library_path()
    os.chown(path, 12345, -1)
    assert not build.private(path)
    with pytest.raises(build.BuildError, match="another user"):
        build.load(path)
    library = build.load_library()  # builds privately instead
    assert hasattr(library, onednn.TARGETS[0])


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
        (False, "", xla_flags.EIGEN_CONVOLUTIONS),
        (
            False,
            "--xla_force_host_platform_device_count=8",
            "--xla_force_host_platform_device_count=8 " + xla_flags.EIGEN_CONVOLUTIONS,
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
        xla_flags.importlib.util, "find_spec", lambda name: object() if accelerator else None
    )
    xla_flags.use_eigen_convolutions_on_cpu()
    assert xla_flags.os.environ["XLA_FLAGS"] == expected


def test_every_convolution_of_the_zoo_equals_xla(with_onednn, request):
    """The gate: each distinct convolution of every model (and the odd shapes), its input
    gradient and its weight gradient, ten calls each with all threads, against XLA's."""
    result = subprocess.run(
        [sys.executable, "-m", "experiments.check_convolutions", "--repeats=10"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    lines = result.stdout.strip().splitlines()
    request.config.stash.setdefault(GATE_SUMMARIES, []).append(lines[-1] if lines else "no output")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert " 0 differ from XLA's" in lines[-1]


@pytest.mark.parametrize("depth", [20, 56])
def test_twenty_train_steps_twice_are_bit_identical(cpu_kernels, depth):
    """Exact resumption needs deterministic gradients: ResNet option B, 20 steps, twice."""
    config = configs.get_config(f"cifar_resnet{depth}", {
        "model.width": 4, "model.shortcut": "B", "train.batch_size": 32,
    })
    model = models.from_config(config.model, num_classes=10)
    optimizer = optim.direction(config)
    mesh = sharding.make_mesh()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (256, 32, 32, 3), np.uint8)
    split = Split(images, rng.integers(0, 10, 256, np.int32))
    data = in_memory.put_train(split, mesh)
    train_steps = steps.make_train_steps(model, optimizer, config, mesh)
    initial = state_lib.create(model, optimizer, config, augment.pixel_mean(split.images), mesh)
    initial = jax.device_get(state_lib.stack([initial]))

    def twenty_steps():
        state = jax.device_put(initial, sharding.replicated(mesh))  # the call consumes it
        state, _ = train_steps(state, data, 20)
        return jax.device_get(state)

    first, second = twenty_steps(), twenty_steps()
    assert int(first.step[0]) == 20
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), first, second)


@pytest.fixture
def fresh_verdicts(monkeypatch, tmp_path):
    """`check.trusted` with no verdicts yet, recording them in `tmp_path`."""
    monkeypatch.delenv("CNN_JAX_ONEDNN_VERIFY", raising=False)
    monkeypatch.setattr(check, "_record_path", lambda: tmp_path / "verified.json")
    check._trusted.cache_clear()
    yield tmp_path / "verified.json"
    check._trusted.cache_clear()


def test_a_kernel_that_disagrees_with_xla_is_not_used(
    with_onednn, fresh_verdicts, monkeypatch, caplog
):
    """On a CPU where a oneDNN kernel is wrong for a shape, that shape runs on XLA's kernels."""
    real = onednn.weight_grad
    monkeypatch.setattr(onednn, "weight_grad", lambda *args: real(*args) * 1.01)
    x = jax.random.normal(jax.random.key(0), (4, 7, 7, 3))
    w = jax.random.normal(jax.random.key(1), (3, 3, 3, 6))
    with caplog.at_level(logging.WARNING, logger=check.__name__):
        actual = jax.grad(conv_loss(cpu_conv.conv_general_dilated, 1, "SAME"), (0, 1))(x, w)
    expected = jax.grad(conv_loss(lax.conv_general_dilated, 1, "SAME"), (0, 1))(x, w)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    jax.tree.map(close, actual, expected)
    assert "disagree with XLA's" in caplog.text and "4x7x7x3 * 3x3x3x6" in caplog.text
    assert not fresh_verdicts.exists() or "4x7x7x3" not in fresh_verdicts.read_text()


def test_a_verdict_is_checked_once_per_machine(with_onednn, fresh_verdicts, monkeypatch):
    convolution = check.Convolution((2, 5, 5, 2), (3, 3, 2, 3), (1, 1), ((1, 1), (1, 1)))
    assert check.trusted(convolution)
    assert str(convolution) in fresh_verdicts.read_text()
    check._trusted.cache_clear()  # a new process

    def not_again(*args, **kwargs):
        raise AssertionError("checked twice")

    monkeypatch.setattr(check, "compare", not_again)
    assert check.trusted(convolution)
