r"""Evaluate a run's checkpoint again: test (and validation) loss and error.

    python -m experiments.evaluate --workdir=runs/cifar_resnet56
    python -m experiments.evaluate --workdir=runs/cifar_resnet56 --step=32000

The checkpoint (latest by default) is restored onto whatever devices are present and
evaluated on the splits its training evaluated, with the config in the workdir. The last line
printed is one JSON object: {"step": ..., "test": {"loss": ..., "error": ...}, ...}.
"""

import json
import logging

from absl import app, flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir.", required=True)
_STEP = flags.DEFINE_integer("step", None, "The checkpoint's step (default: the latest).")

log = logging.getLogger("experiments.evaluate")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    from cnn_jax.training import evaluation

    step, results = evaluation.evaluate_workdir(_WORKDIR.value, _STEP.value)
    for split, values in results.items():
        log.info("%s at step %d: %s loss %.4f, error %.2f%%.", _WORKDIR.value, step, split,
                 values["loss"], values["error"])
    print(json.dumps({"step": step, **results}))


if __name__ == "__main__":
    cli.run(main)
