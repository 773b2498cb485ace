"""XLA's CPU convolution kernels, chosen before JAX starts."""

import importlib.util
import os

EIGEN_CONVOLUTIONS = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
_ACCELERATOR_PLUGINS = ("libtpu", "jax_cuda12_plugin", "jax_cuda13_plugin")


def use_eigen_convolutions_on_cpu() -> None:
    """Before JAX starts: run CPU convolutions with XLA's Eigen kernels instead of YNNPACK's,
    which are slower for these nets (docs/cpu_performance.md). Only where no GPU or TPU plugin
    is installed, and never over a YNN setting already in XLA_FLAGS."""
    accelerator = any(importlib.util.find_spec(name) for name in _ACCELERATOR_PLUGINS)
    flags = os.environ.get("XLA_FLAGS", "")
    if not accelerator and "ynn_fusion_type" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {EIGEN_CONVOLUTIONS}".strip()
