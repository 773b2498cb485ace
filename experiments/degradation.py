r"""He et al. 2015's degradation experiment on CIFAR-10: one config, or a figure's sweep.

One run, resumably:

    python -m experiments.degradation --config=cifar_plain56
    python -m experiments.degradation --config=cifar_resnet56:smoke --workdir=/tmp/r56 \
        --config.dataset.name=fashion_mnist --config.dataset.source=files \
        --config.dataset.data_dir=/usr/share/datasets/fashion-mnist

A figure: every net of Figure 1 (plain-20, plain-56) or Figure 6 (plain and ResNet at 20, 32,
44 and 56 layers, and ResNet-110), several seeds each, one workdir per run under
--sweep_dir (default runs/<sweep>); `--config=ANY:ARG` and `--config.*` overrides apply to
every run, and `python -m experiments.report SWEEP_DIR` draws the figures:

    python -m experiments.degradation --sweep=figure6 --seeds=3 --replicas=at_once
    python -m experiments.degradation --sweep=figure1 --seeds=2 --config=cifar_plain20:smoke

The workdir receives config.json, metrics.jsonl, diagnostics.jsonl, TensorBoard events,
checkpoints/ and summary.json. Running the same command again resumes from the latest
checkpoint (`--allow_config_change` to extend it with more `train.steps`); Ctrl-C saves a
checkpoint and stops.
"""

import logging

from absl import app, flags
from ml_collections import config_flags

from experiments import cli, sweeps
from experiments.train import (
    ALLOW_CONFIG_CHANGE,
    CONFIG,
    WORKDIR,
    config_overrides,
    default_workdir,
    train,
)

_SWEEP = flags.DEFINE_enum("sweep", None, list(sweeps.SWEEPS), "Train every net of a figure.")
_NETS = flags.DEFINE_list("nets", None, "With --sweep: these config names instead of the figure's.")
_SEEDS = flags.DEFINE_integer("seeds", 1, "With --sweep: seeds per net (0, 1, ...).")
_REPLICAS = flags.DEFINE_enum(
    "replicas", "one_by_one", ["one_by_one", "at_once"],
    "With --sweep: train a net's seeds in turn, or together in one program (jax.vmap).",
)
_SWEEP_DIR = flags.DEFINE_string(
    "sweep_dir", None, "With --sweep: where the runs go (default runs/<sweep>)."
)

log = logging.getLogger("experiments.degradation")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if _SWEEP.value is None:
        if CONFIG.value is None:
            raise app.UsageError(
                "--config (a name from experiments/configs) or --sweep is required."
            )
        train(CONFIG.value, WORKDIR.value or default_workdir(CONFIG.value.name, config_overrides()))
        return

    arg, overrides = None, {}
    if CONFIG.value is not None:  # its NAME:ARG gives the argument, its --config.* the overrides
        arg = config_flags.get_config_filename(flags.FLAGS["config"]).partition(":")[2] or None
        overrides = config_overrides()
    nets = tuple(_NETS.value or sweeps.SWEEPS[_SWEEP.value])
    sweep_dir = _SWEEP_DIR.value or default_workdir(
        _SWEEP.value + (f"_{arg}" if arg else ""), overrides
    )
    summaries = sweeps.run(
        nets,
        _SEEDS.value,
        sweep_dir,
        arg,
        overrides,
        _REPLICAS.value == "at_once",
        allow_config_change=ALLOW_CONFIG_CHANGE.value,
    )
    log.info("%s: %d runs finished; python -m experiments.report %s draws the figures.",
             sweep_dir, len(summaries), sweep_dir)


if __name__ == "__main__":
    cli.run(main)
