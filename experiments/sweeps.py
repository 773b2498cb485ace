"""The paper's figures as sweeps: every net of a figure, several seeds each, one workdir per run.

    sweep_dir/
      sweep.json                 what was run: nets, seeds, config argument, overrides
      cifar_plain20/seed0/       an ordinary workdir (config.json, metrics.jsonl, ...)
      cifar_plain20/seed1/
      ...

Each run resumes on its own, so a sweep started again picks up where it stopped. With
`at_once`, the seeds of one net train together in one compiled program (jax.vmap over the
replicas), which fills a large accelerator with a small net; with `one_by_one` they train
in turn. Both give the same per-seed numbers, up to float rounding.
"""

import json
import logging
from typing import TYPE_CHECKING, Any

from etils import epath

from experiments import configs

if TYPE_CHECKING:
    from cnn_jax.training.metrics import MetricsCallback

log = logging.getLogger("experiments.sweeps")

SWEEPS = {
    # Figure 1: the degradation problem, plain-20 against plain-56.
    "figure1": ("cifar_plain20", "cifar_plain56"),
    # Figure 6 (left and middle panels, and ResNet-110 of the right one).
    "figure6": (
        "cifar_plain20", "cifar_plain32", "cifar_plain44", "cifar_plain56",
        "cifar_resnet20", "cifar_resnet32", "cifar_resnet44", "cifar_resnet56", "cifar_resnet110",
    ),
}


def workdir(sweep_dir: epath.PathLike, net: str, seed: int) -> epath.Path:
    return epath.Path(sweep_dir) / net / f"seed{seed}"


def run(
    nets: tuple[str, ...],
    seeds: int,
    sweep_dir: epath.PathLike,
    arg: str | None = None,
    overrides: dict[str, Any] | None = None,
    at_once: bool = False,
    on_metrics: "MetricsCallback | None" = None,
    allow_config_change: bool = False,
) -> list[dict[str, Any]]:
    """Trains `seeds` seeds of every net of `nets` (config names; `arg` as in NAME:ARG and the
    same `overrides` for all) and returns the summaries. `on_metrics(workdir, row)` sees every
    metrics row written (e.g. `cnn_jax.report.live.LivePlot()`); `allow_config_change` as in
    `train.train_and_evaluate`."""
    # Imported late: JAX is slow to load.
    from cnn_jax.training import train, workdir as workdir_lib

    sweep_dir = epath.Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    record = {"nets": list(nets), "seeds": seeds, "arg": arg, "overrides": overrides or {}}
    workdir_lib.write_atomically(
        sweep_dir / "sweep.json", json.dumps(record, indent=2, default=str) + "\n"
    )
    summaries = []
    for net in nets:
        spec = f"{net}:{arg}" if arg else net
        group = [
            configs.get_config(spec, {**(overrides or {}), "seed": seed}) for seed in range(seeds)
        ]
        workdirs = [workdir(sweep_dir, net, seed) for seed in range(seeds)]
        log.info("%s: %d seed(s) %s.", net, seeds, "at once" if at_once else "one after another")
        if at_once:
            summaries += train.train_replicas(group, workdirs, on_metrics, allow_config_change)
        else:
            summaries += [train.train_and_evaluate(c, w, on_metrics, allow_config_change)
                          for c, w in zip(group, workdirs)]
    return summaries
