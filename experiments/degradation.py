r"""He et al. 2015's degradation experiment on CIFAR-10: train one config, resumably.

    python -m experiments.degradation --config=cifar_plain56
    python -m experiments.degradation --config=cifar_resnet56:smoke --workdir=/tmp/r56 \
        --config.dataset.name=fashion_mnist --config.dataset.source=files \
        --config.dataset.data_dir=/usr/share/datasets/fashion-mnist

The workdir (default runs/<config name>) receives config.json, metrics.jsonl, TensorBoard
events, checkpoints/ and summary.json. Running the same command again resumes from the
latest checkpoint; Ctrl-C saves a checkpoint and stops.
"""

import logging

from absl import app, flags
from ml_collections import config_flags

from experiments import cli

log = logging.getLogger("experiments.degradation")

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config name (see experiments/configs), or a path; NAME:ARGS passes ARGS."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the run's files go (default runs/<config name>).")
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    from cnn_jax.training import train  # Imported after flag parsing: JAX is slow to load.

    config = _CONFIG.value
    workdir = _WORKDIR.value or f"runs/{config.name}"  # local, or gs://... on a TPU pod
    summary = train.train_and_evaluate(config, workdir)
    errors = ", ".join(
        f"{split} error {summary[f'{split}_error']:.2f}%"
        for split in ("train", "val", "test")
        if f"{split}_error" in summary
    )
    state = "was already finished" if summary.get("already_finished") else "finished"
    log.info("%s %s at step %d: %s.", workdir, state, summary["step"], errors)


if __name__ == "__main__":
    cli.run(main)
