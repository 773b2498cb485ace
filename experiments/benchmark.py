r"""Speed of the real train step on synthetic data of the model's input size.

    python -m experiments.benchmark --model=cifar_resnet20 --batch_size=128
    python -m experiments.benchmark --model=cifar_resnet56 --batch_size=128 --compare=torch
    python -m experiments.benchmark --model=resnet50 --batch_size=256 --dtype=bfloat16

The last line printed is one JSON object: images_per_sec, step_ms, compile_s,
peak_memory_bytes (null where the backend does not report it), flops_per_step (the model's
6 x multiply-adds x batch: forward and backward, as `experiments.summary` counts them) and
achieved_flops_per_sec, and with --compare=torch the PyTorch twin's
images/s and the ratio (ours / PyTorch).
"""

import json
import logging
import time

import ml_collections
import numpy as np
from absl import flags

from experiments import cli, configs

_MODEL = flags.DEFINE_string("model", "cifar_resnet20", "A name from cnn_jax.models.names().")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Global batch size.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps (after 2 warm-up steps).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Computation dtype.")
_COMPARE = flags.DEFINE_enum("compare", None, ["torch"], "Also time a PyTorch implementation.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "Input height = width (default: the model's).")
_SCAN = flags.DEFINE_bool("scan", None, "CIFAR nets: scan over identical blocks (default: the model's).")

log = logging.getLogger("experiments.benchmark")

def benchmark_config(model: str, batch_size: int, dtype: str, scan: bool | None = None) -> ml_collections.ConfigDict:
    """The model's experiment config where one exists (cifar_*), else the CIFAR recipe (SGD,
    momentum, weight decay) applied to `model`."""
    if model in configs.names():
        config = ml_collections.ConfigDict(configs.get_config(model).to_dict())
    else:
        config = ml_collections.ConfigDict(configs.get_config("cifar_resnet20").to_dict())
        config.model = ml_collections.ConfigDict({"name": model})
    config.model.dtype = dtype
    if scan is not None:
        config.model.scan = scan
    config.train.batch_size = batch_size
    return config


def measure(
    model_name: str, batch_size: int, steps: int, dtype: str, image_size: int | None = None,
    scan: bool | None = None,
) -> dict:
    """Compiles and times `steps` train steps; returns the numbers as a dict."""
    import jax

    from cnn_jax import models
    from cnn_jax.data import in_memory
    from cnn_jax.data.datasets import Split
    from cnn_jax.models import summary
    from cnn_jax.training import optim, sharding, state as state_lib, steps as steps_lib

    config = benchmark_config(model_name, batch_size, dtype, scan)
    shape = models.input_shape(model_name, image_size)
    num_classes = 10 if model_name.startswith(("cifar", "lenet")) else 1000
    model = models.from_config(config.model, num_classes)
    mesh = sharding.make_mesh()
    rng = np.random.default_rng(0)
    rows = 2 * batch_size
    split = Split(rng.integers(0, 256, (rows, *shape), np.uint8), rng.integers(0, num_classes, rows, np.int32))
    if shape[0] != 32:
        config.augment.crop_padding = 0  # ImageNet-size nets: no CIFAR padding
    data = in_memory.put_train(split, mesh)
    optimizer = optim.direction(config)
    state = state_lib.stack([state_lib.create(model, optimizer, config, np.zeros(shape, np.float32), mesh)])
    train_steps = steps_lib.make_train_steps(model, optimizer, config, mesh)

    compile_s = train_steps.compile(state, data)
    state, sums = train_steps(state, data, 2)
    jax.block_until_ready(sums)
    start = time.perf_counter()
    state, sums = train_steps(state, data, steps)
    jax.block_until_ready(sums)
    seconds = time.perf_counter() - start

    flops = 6.0 * summary.totals(summary.layer_table(model, shape))[1] * batch_size
    memory = mesh.devices.flat[0].memory_stats() or {}
    return {
        "model": model_name,
        "batch_size": batch_size,
        "dtype": dtype,
        "backend": jax.default_backend(),
        "devices": mesh.size,
        "images_per_sec": steps * batch_size / seconds,
        "step_ms": 1000 * seconds / steps,
        "compile_s": compile_s,
        "peak_memory_bytes": memory.get("peak_bytes_in_use"),
        "flops_per_step": flops,
        "achieved_flops_per_sec": flops * steps / seconds,
        "params": state_lib.num_params(state.params),
        "scan": config.model.get("scan"),
    }


def main(argv: list[str]) -> None:
    import jax

    jax.config.update("jax_enable_compilation_cache", False)  # compile_s times a real compile
    result = measure(_MODEL.value, _BATCH.value, _STEPS.value, _DTYPE.value, _IMAGE_SIZE.value, _SCAN.value)
    log.info("%s: %.1f images/s, %.1f ms/step, compiled in %.1f s.", result["model"],
             result["images_per_sec"], result["step_ms"], result["compile_s"])
    if _COMPARE.value == "torch":
        from experiments import torch_reference

        reference = torch_reference.benchmark(_MODEL.value, _BATCH.value, _STEPS.value)
        result["torch_images_per_sec"] = reference["images_per_sec"]
        result["torch_version"] = reference["torch"]
        result["ratio"] = result["images_per_sec"] / reference["images_per_sec"]
        log.info("PyTorch %s: %.1f images/s; ratio %.2f.", reference["torch"],
                 reference["images_per_sec"], result["ratio"])
    print(json.dumps(result))


if __name__ == "__main__":
    cli.run(main)
