r"""The loss landscape (Li et al. 2018) around a trained CIFAR net's solution.

    python -m experiments.landscape --workdir=runs/figure6/cifar_resnet56/seed0
    python -m experiments.landscape --workdir=RUN --grid=21 --span=1.0 --examples=2048
    python -m experiments.landscape --sweep_dir=runs/figure6 --nets=cifar_plain56,cifar_resnet56

Evaluates the training loss and error on the first --examples training images (unaugmented)
at theta + a d1 + b d2 over a --grid x --grid grid of a, b in [-span, span], with d1, d2
filter-normalised random directions drawn from --seed (the same seed: the same directions
for plain and ResNet nets of one depth), and the 1-D curve along d1. Writes landscape.npz,
landscape_contour.png and landscape_surface.png into each workdir; with --sweep_dir also a
landscape.png of every net into the sweep directory. The last line printed per run is one
JSON object: the centre and border losses, the share of non-convex points, the time.
"""

import json
import logging

import numpy as np
from absl import app, flags

from experiments import analysed_runs, cli

_GRID = flags.DEFINE_integer("grid", 21, "Points per side of the grid (at least 3).")
_SPAN = flags.DEFINE_float("span", 1.0, "The grid covers [-span, span] along each direction.")
_EXAMPLES = flags.DEFINE_integer("examples", 2048, "Training images the loss is measured on.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the two random directions.")
_BATCH = flags.DEFINE_integer("batch_size", 512, "Images per forward pass.")

log = logging.getLogger("experiments.landscape")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    from etils import epath

    from cnn_jax.analysis import figures, landscape, trained
    from cnn_jax.errors import ConfigError

    if _GRID.value < 3:
        raise ConfigError(f"--grid needs at least 3 points a side, got {_GRID.value}.")
    trained.require_positive(
        batch_size=_BATCH.value, parallel=analysed_runs.PARALLEL.value, examples=_EXAMPLES.value
    )
    items = []
    for workdir in analysed_runs.workdirs():
        net = trained.restore(workdir, analysed_runs.STEP.value)
        data = landscape.surface(
            net,
            _GRID.value,
            _SPAN.value,
            _EXAMPLES.value,
            _SEED.value,
            _BATCH.value,
            parallel=analysed_runs.PARALLEL.value,
        )
        with (workdir / "landscape.npz").open("wb") as f:
            np.savez(f, **data)
        title = f"{figures.net_label(data['net'])}, seed {data['seed']}"
        figures.landscape_contour(data, workdir / "landscape_contour.png", title)
        figures.landscape_surface(data, workdir / "landscape_surface.png", title)
        numbers = landscape.summary(data)
        log.info(
            "%s: loss %.3f at the centre, %.3f on the border, %.0f%% of points non-convex "
            "(%d points in %.0f s, %.0f images/s).",
            workdir,
            numbers["center_loss"],
            numbers["border_loss"],
            100 * numbers["nonconvex_share"],
            data["loss"].size,
            data["seconds"],
            data["images_per_sec"],
        )
        items.append((data["net"], data))
        print(
            json.dumps(
                {
                    "workdir": str(workdir),
                    **numbers,
                    "seconds": data["seconds"],
                    "compile_s": data["compile_s"],
                    "images_per_sec": data["images_per_sec"],
                }
            )
        )
    if analysed_runs.SWEEP_DIR.value:
        path = epath.Path(analysed_runs.SWEEP_DIR.value) / "landscape.png"
        figures.landscapes(items, path)
        log.info("Wrote %s", path)


if __name__ == "__main__":
    cli.run(main)
