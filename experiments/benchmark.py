r"""Speed of the real train step on synthetic data of the model's input size.

    python -m experiments.benchmark --model=cifar_resnet20 --batch_size=128
    python -m experiments.benchmark --model=cifar_resnet56 --batch_size=128 --compare=torch
    python -m experiments.benchmark --model=resnet50 --batch_size=256 --dtype=bfloat16
    python -m experiments.benchmark --model=cifar_resnet56 --batch_size=1000 --inference

Each of `--rounds` rounds times one call of `--steps` steps; the numbers are the medians. The
last line printed is one JSON object: images_per_sec, step_ms, compile_s, peak_memory_bytes
(null where the backend does not report it), flops_per_step (the model's 6 x multiply-adds x
batch: forward and backward, as `experiments.summary` counts them) and achieved_flops_per_sec.
With --compare=torch the rounds alternate between our step and the PyTorch twin's (which runs
in a child process, idle while ours runs), which cancels most of a shared machine's drift; the
JSON adds both sides' images/s per round, the twin's median and the ratio (ours / PyTorch).
With --inference the timed call is the evaluation's (`steps.make_evaluate`: BN statistics, no
gradients) over `--steps` batches, and FLOPs count the forward pass only (2 x multiply-adds).
"""

import json
import logging
import statistics
import time
from typing import Any, Callable

import ml_collections
import numpy as np
from absl import flags

from experiments import cli, configs, torch_reference

_MODEL = flags.DEFINE_string("model", "cifar_resnet20", "A name from cnn_jax.models.names().")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Global batch size.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per round (after 2 warm-up steps).")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed rounds; images/s is the median.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Computation dtype.")
_COMPARE = flags.DEFINE_enum("compare", None, ["torch"], "Also time a PyTorch implementation.")
_TORCH_CHANNELS_LAST = flags.DEFINE_bool(
    "torch_channels_last", False,
    "Time the PyTorch twin in channels-last (NHWC) memory format, its faster CPU layout.",
)
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", None, "Input height = width (default: the model's)."
)
_SCAN = flags.DEFINE_bool(
    "scan", None, "CIFAR nets: scan over identical blocks (default: the model's)."
)
_WIDTH = flags.DEFINE_integer(
    "width", None, "CIFAR nets: first-stage filters (default: the config's, 16)."
)
_INFERENCE = flags.DEFINE_bool(
    "inference",
    False,
    "Time the evaluation's forward pass (steps batches per call) instead of the train step.",
)

log = logging.getLogger("experiments.benchmark")

# The CIFAR nets draw their batches from a training set of CIFAR-10's size, as in training.
CIFAR_TRAIN_ROWS = 50_000


def benchmark_config(
    model: str, batch_size: int, dtype: str, scan: bool | None = None, width: int | None = None
) -> ml_collections.ConfigDict:
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
    if width is not None:
        config.model.width = width
    config.train.batch_size = batch_size
    return config


def prepare(
    model_name: str,
    batch_size: int,
    dtype: str,
    image_size: int | None = None,
    scan: bool | None = None,
    inference: bool = False,
    width: int | None = None,
) -> tuple[Callable[[int], float], dict[str, Any]]:
    """Builds, compiles and warms up (2 steps) the train step.

    Returns `run(steps) -> seconds`, which times that many steps in one call, and what does not
    depend on the timing: the model, the backend, compile_s, FLOPs per step and parameters.
    `inference`: the steps are evaluation batches (see `prepare_inference`).
    """
    if inference:
        return prepare_inference(model_name, batch_size, dtype, image_size, scan, width)
    import jax

    from cnn_jax import models
    from cnn_jax.data import in_memory
    from cnn_jax.data.datasets import Split
    from cnn_jax.native import onednn
    from cnn_jax import sharding
    from cnn_jax.training import optim, state as state_lib, steps as steps_lib

    config = benchmark_config(model_name, batch_size, dtype, scan, width)
    shape = models.input_shape(model_name, image_size)
    num_classes = 10 if model_name.startswith(("cifar", "lenet")) else 1000
    model = models.from_config(config.model, num_classes)
    mesh = sharding.make_mesh()
    rng = np.random.default_rng(0)
    rows = max(CIFAR_TRAIN_ROWS, batch_size) if shape[0] == 32 else 2 * batch_size
    split = Split(
        rng.integers(0, 256, (rows, *shape), np.uint8), rng.integers(0, num_classes, rows, np.int32)
    )
    if shape[0] != 32:
        config.augment.crop_padding = 0  # ImageNet-size nets: no CIFAR padding
    data = in_memory.put_train(split, mesh)
    optimizer = optim.direction(config)
    state = state_lib.stack(
        [state_lib.create(model, optimizer, config, np.zeros(shape, np.float32), mesh)]
    )
    train_steps = steps_lib.make_train_steps(model, optimizer, config, mesh)
    if jax.default_backend() == "cpu":
        onednn.available()  # a new machine builds the CPU kernels first (seconds): not compile_s
    compile_s = train_steps.compile(state, data)

    def run(steps: int) -> float:
        nonlocal state
        start = time.perf_counter()
        state, sums = train_steps(state, data, steps)
        jax.block_until_ready(sums)
        return time.perf_counter() - start

    run(2)
    info = _describe(model_name, batch_size, dtype, mesh, compile_s, model, shape, state, config)
    info["flops_per_step"] *= 3  # forward and backward: 6 x multiply-adds
    return run, info


def prepare_inference(
    model_name: str,
    batch_size: int,
    dtype: str,
    image_size: int | None = None,
    scan: bool | None = None,
    width: int | None = None,
) -> tuple[Callable[[int], float], dict[str, Any]]:
    """`prepare` for the evaluation's forward pass: `run(steps)` times one call of the compiled
    evaluation over `steps` batches of random images (compiled once per number of steps)."""
    import jax

    from cnn_jax import models, sharding
    from cnn_jax.data import in_memory
    from cnn_jax.data.datasets import Split
    from cnn_jax.training import optim, state as state_lib, steps as steps_lib

    config = benchmark_config(model_name, batch_size, dtype, scan, width)
    shape = models.input_shape(model_name, image_size)
    num_classes = 10 if model_name.startswith(("cifar", "lenet")) else 1000
    model = models.from_config(config.model, num_classes)
    mesh = sharding.make_mesh()
    state = state_lib.stack(
        [
            state_lib.create(
                model, optim.direction(config), config, np.zeros(shape, np.float32), mesh
            )
        ]
    )
    evaluate = steps_lib.make_evaluate(model, mesh)
    rng = np.random.default_rng(0)
    splits: dict[int, Any] = {}

    def split_of(steps: int):
        if steps not in splits:
            rows = steps * batch_size
            split = Split(
                rng.integers(0, 256, (rows, *shape), np.uint8),
                rng.integers(0, num_classes, rows, np.int32),
            )
            splits[steps] = in_memory.put_eval(split, batch_size, mesh)
        return splits[steps]

    start = time.perf_counter()
    jax.block_until_ready(evaluate(state, split_of(1)))
    compile_s = time.perf_counter() - start

    def run(steps: int) -> float:
        data = split_of(steps)
        jax.block_until_ready(evaluate(state, data))  # compiles for this number of batches
        start = time.perf_counter()
        jax.block_until_ready(evaluate(state, data))
        return time.perf_counter() - start

    info = _describe(model_name, batch_size, dtype, mesh, compile_s, model, shape, state, config)
    return run, {**info, "inference": True}


def _describe(model_name, batch_size, dtype, mesh, compile_s, model, shape, state, config):
    """What a benchmark line reports besides its speed; FLOPs of a forward pass (2 x
    multiply-adds)."""
    import jax

    from cnn_jax.models import summary
    from cnn_jax.training import state as state_lib

    return {
        "model": model_name,
        "batch_size": batch_size,
        "dtype": dtype,
        "backend": jax.default_backend(),
        "devices": mesh.size,
        "compile_s": compile_s,
        "flops_per_step": 2.0 * summary.totals(summary.layer_table(model, shape))[1] * batch_size,
        "params": state_lib.num_params(state.params),
        "scan": config.model.get("scan"),
    }


def peak_memory_bytes() -> int | None:
    """Peak memory of the first device so far, where the backend reports it (not CPUs)."""
    import jax

    return (jax.local_devices()[0].memory_stats() or {}).get("peak_bytes_in_use")


def speed(info: dict[str, Any], steps: int, seconds: float) -> dict[str, float]:
    """images_per_sec, step_ms and achieved_flops_per_sec of `steps` steps in `seconds`."""
    return {
        "images_per_sec": steps * info["batch_size"] / seconds,
        "step_ms": 1000 * seconds / steps,
        "achieved_flops_per_sec": info["flops_per_step"] * steps / seconds,
    }


def measure(
    model_name: str, batch_size: int, steps: int, dtype: str, image_size: int | None = None,
    scan: bool | None = None, rounds: int = 1, inference: bool = False, width: int | None = None,
) -> dict:
    """Compiles the train step (or the evaluation) and times `rounds` calls of `steps` steps;
    reports the median."""
    run, info = prepare(model_name, batch_size, dtype, image_size, scan, inference, width)
    seconds = statistics.median(run(steps) for _ in range(rounds))
    return {**info, **speed(info, steps, seconds), "peak_memory_bytes": peak_memory_bytes()}


def compare_with_torch(
    model_name: str, batch_size: int, steps: int, dtype: str, rounds: int, scan: bool | None = None,
    torch_channels_last: bool = False,
) -> dict:
    """Our train step and the PyTorch twin's, timed in alternating rounds of `steps` steps each.

    Alternating cancels most of a shared machine's drift (10-20% here between runs); the
    numbers are the medians over the rounds, and the ratio is ours / PyTorch's images/s.
    """
    run, info = prepare(model_name, batch_size, dtype, scan=scan)
    run_torch, torch_info = torch_reference.step_timer_in_subprocess(
        model_name, batch_size, channels_last=torch_channels_last
    )
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(run(steps))
        theirs.append(run_torch(steps))
    result = {
        **info,
        **speed(info, steps, statistics.median(ours)),
        "peak_memory_bytes": peak_memory_bytes(),
    }
    torch_images_per_sec = steps * batch_size / statistics.median(theirs)
    return {
        **result,
        "rounds_images_per_sec": [steps * batch_size / s for s in ours],
        "torch_images_per_sec": torch_images_per_sec,
        "torch_rounds_images_per_sec": [steps * batch_size / s for s in theirs],
        "torch_version": torch_info["torch"],
        "torch_memory_format": torch_info["memory_format"],
        "ratio": result["images_per_sec"] / torch_images_per_sec,
    }


def main(argv: list[str]) -> None:
    import jax

    jax.config.update("jax_enable_compilation_cache", False)  # compile_s times a real compile
    if _COMPARE.value and (_INFERENCE.value or _WIDTH.value):
        from cnn_jax.errors import ConfigError

        raise ConfigError(
            "--compare=torch times the train step at the paper's width; "
            "drop --inference and --width."
        )
    if _COMPARE.value == "torch":
        result = compare_with_torch(
            _MODEL.value, _BATCH.value, _STEPS.value, _DTYPE.value, _ROUNDS.value, _SCAN.value,
            _TORCH_CHANNELS_LAST.value,
        )
    else:
        result = measure(_MODEL.value, _BATCH.value, _STEPS.value, _DTYPE.value, _IMAGE_SIZE.value,
                         _SCAN.value, _ROUNDS.value, _INFERENCE.value, _WIDTH.value)
    log.info("%s: %.1f images/s, %.1f ms/step, compiled in %.1f s.", result["model"],
             result["images_per_sec"], result["step_ms"], result["compile_s"])
    if "ratio" in result:
        log.info("PyTorch %s (%s): %.1f images/s; ratio %.2f.", result["torch_version"],
                 result["torch_memory_format"],
                 result["torch_images_per_sec"], result["ratio"])
    print(json.dumps(result))


if __name__ == "__main__":
    cli.run(main)
