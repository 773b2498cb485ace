"""Shared fixtures: tiny configs that train in seconds on a CPU."""

import gzip
import importlib.util
import os
import pathlib

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The tests load TensorFlow (tfds) and PyTorch (the conversion twins) into one process. Loaded
# in that order, PyTorch's triton crashes on import (both bundle LLVM); the other order works.
if importlib.util.find_spec("torchvision"):
    import torchvision  # noqa: F401

ROOT = pathlib.Path(__file__).parent.parent
FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")
GATE_SUMMARIES = pytest.StashKey[list]()  # what the CPU convolution gate checked


def tiny_overrides(**extra):
    """A CIFAR net at width 4, batch 16: seconds per run, same code path as the paper's."""
    return {
        "model.width": 4,
        "train.batch_size": 16,
        "train.steps": 12,
        "train.log_every_steps": 4,
        "schedule.boundaries": (8, 10),
        "eval.every_steps": 6,
        "eval.batch_size": 16,
        "eval.max_examples": 64,
        "checkpoint.every_steps": 6,
        **extra,
    }


@pytest.fixture
def fashion_mnist_dir() -> pathlib.Path:
    if not (FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
    return FASHION_MNIST


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory) -> pathlib.Path:
    """A small MNIST-format data set: 256 training and 64 test images of 10 classes."""
    directory = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 320)
    # Each class has its own brightness under the noise: learnable in a few steps.
    noise = rng.integers(0, 40, (320, 28, 28))
    images = (20 * labels[:, None, None] + noise).astype(np.uint8)
    write_idx(directory / "train-images-idx3-ubyte.gz", images[:256])
    write_idx(directory / "train-labels-idx1-ubyte.gz", labels[:256])
    write_idx(directory / "t10k-images-idx3-ubyte.gz", images[256:])
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", labels[256:])
    return directory


def pytest_configure(config):
    """Tests compile the same small programs many times: share them through JAX's cache."""
    import tempfile

    cache = tempfile.mkdtemp(prefix="cnn_jax_test_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = cache  # the commands tests start share it too
    import jax

    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    config.cnn_jax_cache = cache


def pytest_unconfigure(config):
    import shutil

    shutil.rmtree(getattr(config, "cnn_jax_cache", ""), ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for line in config.stash.get(GATE_SUMMARIES, []):
        terminalreporter.write_line(f"CPU convolution gate: {line}")


@pytest.fixture(autouse=True)
def _project_loggers_as_they_were():
    """A command run in-process (experiments.cli) gives the project's loggers a handler of
    their own and stops their propagation to the root; later tests' caplog needs both back."""
    import logging

    loggers = [logging.getLogger(name) for name in ("cnn_jax", "experiments")]
    saved = [(lg.level, list(lg.handlers), lg.propagate) for lg in loggers]
    yield
    for lg, (level, handlers, propagate) in zip(loggers, saved):
        lg.setLevel(level)
        lg.handlers[:] = handlers
        lg.propagate = propagate
