r"""The lesion study (Veit, Wilber and Belongie 2016) of trained CIFAR nets.

    python -m experiments.lesion --workdir=runs/figure6/cifar_resnet56/seed0
    python -m experiments.lesion --sweep_dir=runs/figure6 --nets=cifar_plain56,cifar_resnet56

Restores the run's latest checkpoint and evaluates its test error unchanged, with each block
deleted in turn, and with k random blocks deleted for k = 1..n (--draws sets of each; --swaps
adds adjacent blocks swapped). Writes lesion.json and lesion.png into each workdir, and with
--sweep_dir a lesion.png of every net side by side into the sweep directory. The last line
printed is one JSON object per run: the baseline error and the mean rise when one block is
deleted.
"""

import json
import logging

from absl import app, flags

from experiments import analysed_runs, cli

_DRAWS = flags.DEFINE_integer("draws", 3, "Random sets of blocks deleted per k.")
_MAX_DELETED = flags.DEFINE_integer(
    "max_deleted", 0, "Largest k of the k-curve (0: every deletable block)."
)
_SWAPS = flags.DEFINE_bool("swaps", False, "Also swap each pair of adjacent blocks of one shape.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random sets of blocks.")
_EXAMPLES = flags.DEFINE_integer(
    "examples", 0, "Test images (0: those the run's training evaluated)."
)
_CHUNK = flags.DEFINE_integer(
    "chunk", 8, "Lesions per compiled call (progress is logged per call)."
)

log = logging.getLogger("experiments.lesion")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    from etils import epath

    from cnn_jax.analysis import figures, lesion, trained
    from cnn_jax.errors import ConfigError

    trained.require_positive(
        draws=_DRAWS.value, chunk=_CHUNK.value, parallel=analysed_runs.PARALLEL.value
    )
    for name, flag in (("max_deleted", _MAX_DELETED), ("examples", _EXAMPLES)):
        if flag.value < 0:
            raise ConfigError(f"--{name} must be 0 (all) or more, got {flag.value}.")
    records = []
    for workdir in analysed_runs.workdirs():
        net = trained.restore(workdir, analysed_runs.STEP.value)
        record = lesion.study(
            net,
            _DRAWS.value,
            _MAX_DELETED.value or None,
            _SWAPS.value,
            _SEED.value,
            _CHUNK.value,
            analysed_runs.PARALLEL.value,
            _EXAMPLES.value,
        )
        (workdir / "lesion.json").write_text(json.dumps(record, indent=1) + "\n")
        figures.lesion([record], workdir / "lesion.png")
        increase = lesion.single_block_increase(record)
        log.info(
            "%s: test error %.2f%%; deleting one block adds %.2f points on average (%d lesions "
            "in %.0f s, %.0f images/s).",
            workdir,
            record["baseline_error"],
            increase,
            record["timing"]["lesions"],
            record["timing"]["seconds"],
            record["timing"]["images_per_sec"],
        )
        records.append(record)
        print(
            json.dumps(
                {
                    "workdir": str(workdir),
                    "baseline_error": record["baseline_error"],
                    "single_block_increase": increase,
                    "timing": record["timing"],
                }
            )
        )
    if analysed_runs.SWEEP_DIR.value:
        path = epath.Path(analysed_runs.SWEEP_DIR.value) / "lesion.png"
        figures.lesion(lesion.one_per_net(records), path)
        log.info("Wrote %s", path)


if __name__ == "__main__":
    cli.run(main)
