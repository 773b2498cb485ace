r"""Train any config, resumably.

    python -m experiments.train --config=imagenet_resnet50 --config.dataset.manual_dir=DIR
    python -m experiments.train --config=imagenet_resnet18:smoke --workdir=/tmp/r18

The workdir (default runs/<config name>, plus the overrides that define the run) receives
config.json, metrics.jsonl, TensorBoard events, checkpoints/ and summary.json. Running the
same command again resumes from the latest checkpoint; Ctrl-C saves a checkpoint and stops.
The CIFAR experiment has its own entry point with the same flags, `experiments.degradation`.
"""

import re
from typing import Any

import logging

from absl import app, flags
from ml_collections import config_flags

from experiments import cli

log = logging.getLogger("experiments.train")

CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config name (see experiments/configs), or a path; NAME:ARGS passes ARGS."
)
WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where the run's files go (default runs/<config name>, plus the overrides "
    "that define the run, e.g. runs/cifar_plain56_smoke_fashion_mnist_files)."
)
ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "Resume a run with other values of the fields that do not "
    "define it: train.steps (to extend it), log, eval and checkpoint intervals, data folders."
)


def default_workdir(name: str, overrides: dict[str, Any]) -> str:
    """runs/<name>, followed by the overrides that define the run (a `name` field by its
    value, others as field=value), so that runs of one config on other data, nets or
    recipes get workdirs of their own: `default_workdir("cifar_plain56_smoke",
    {"dataset.name": "fashion_mnist", "model.width": 8, "train.steps": 50})` is
    "runs/cifar_plain56_smoke_fashion_mnist_width=8" (`train.steps` extends a run instead)."""
    from cnn_jax.training import workdir  # Imported late: JAX is slow to load.

    def safe(value: Any) -> str:
        return re.sub(r"[^\w.-]+", "-", str(value)).strip("-")

    parts = [safe(name)] + [
        safe(value) if field.endswith("name") else f"{field.rpartition('.')[2]}={safe(value)}"
        for field, value in overrides.items() if workdir.defines_the_run(field)
    ]
    return "runs/" + "_".join(parts)


def config_overrides() -> dict[str, Any]:
    """The `--config.FIELD=VALUE` overrides of the command line."""
    return config_flags.get_override_values(flags.FLAGS["config"])


def train(config, workdir: str) -> dict:
    """Trains `config` in `workdir` and logs how it ended; returns the summary."""
    from cnn_jax.training import train as train_lib  # Imported late: JAX is slow to load.

    summary = train_lib.train_and_evaluate(
        config, workdir, allow_config_change=ALLOW_CONFIG_CHANGE.value
    )
    errors = ", ".join(
        f"{split} error {summary[f'{split}_error']:.2f}%"
        for split in ("train", "val", "test")
        if f"{split}_error" in summary
    )
    state = "was already finished" if summary.get("already_finished") else "finished"
    log.info("%s %s at step %d: %s.", workdir, state, summary["step"], errors)
    return summary


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if CONFIG.value is None:
        raise app.UsageError("--config is required (a name from experiments/configs, or a path).")
    config = CONFIG.value  # the workdir is local, or gs://... on a TPU pod
    train(config, WORKDIR.value or default_workdir(config.name, config_overrides()))


if __name__ == "__main__":
    cli.run(main)
