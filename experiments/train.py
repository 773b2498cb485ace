r"""Train any config, resumably.

    python -m experiments.train --config=imagenet_resnet50 --config.dataset.manual_dir=DIR
    python -m experiments.train --config=imagenet_resnet18:smoke --workdir=/tmp/r18

The workdir (default runs/<config name>) receives config.json, metrics.jsonl, TensorBoard
events, checkpoints/ and summary.json. Running the same command again resumes from the
latest checkpoint; Ctrl-C saves a checkpoint and stops. The CIFAR experiment has its own
entry point with the same flags, `experiments.degradation`.
"""

import logging

from absl import app, flags
from ml_collections import config_flags

from experiments import cli

log = logging.getLogger("experiments.train")

CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config name (see experiments/configs), or a path; NAME:ARGS passes ARGS."
)
WORKDIR = flags.DEFINE_string("workdir", None, "Where the run's files go (default runs/<config name>).")


def train(config, workdir: str) -> dict:
    """Trains `config` in `workdir` and logs how it ended; returns the summary."""
    from cnn_jax.training import train as train_lib  # Imported late: JAX is slow to load.

    summary = train_lib.train_and_evaluate(config, workdir)
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
    config = CONFIG.value
    train(config, WORKDIR.value or f"runs/{config.name}")  # local, or gs://... on a TPU pod


if __name__ == "__main__":
    cli.run(main)
