"""Training curves that redraw while runs train, for notebooks (Figure 6's layout: plain
nets left, ResNets right; dashed = training error, bold = test error).

    plot = LivePlot()
    # or train_and_evaluate(..., on_metrics=plot)
    sweeps.run(nets, seeds, sweep_dir, on_metrics=plot)
    plot.figure                                          # the final figure
"""

import io
import time
from typing import Any

from etils import epath
from matplotlib.figure import Figure

from cnn_jax.report import figures, runs as runs_lib


class LivePlot:
    """A `on_metrics(workdir, row)` callback that keeps each run's error curves and redraws
    them in the notebook's output at most every `min_interval_s` seconds (and after every
    evaluation). Outside IPython it only collects the curves."""

    def __init__(self, min_interval_s: float = 2.0):
        self.min_interval_s = min_interval_s
        # (net, workdir) -> split -> ([steps], [errors])
        self.curves: dict[tuple[str, str], dict[str, tuple[list[int], list[float]]]] = {}
        self.figure = Figure(figsize=(11, 4), layout="constrained")
        self._display = None
        self._drawn_at = 0.0

    def __call__(self, workdir: epath.Path, row: dict[str, Any]) -> None:
        if row["split"] not in ("train", "test") or "error" not in row:
            return
        net = runs_lib.net_of_workdir(workdir)
        steps, errors = self.curves.setdefault((net, str(workdir)), {}).setdefault(
            row["split"], ([], [])
        )
        steps.append(row["step"])
        errors.append(row["error"])
        if row["split"] == "test" or time.monotonic() - self._drawn_at >= self.min_interval_s:
            self.draw()

    def draw(self) -> None:
        """Redraws every curve into `self.figure` and shows it (in IPython)."""
        self._drawn_at = time.monotonic()
        self.figure.clear()
        plain, resnet = self.figure.subplots(1, 2, sharey=True)
        labelled = set()
        for (net, _), splits in self.curves.items():
            info = runs_lib.net_info(net)
            ax = resnet if info and info[0] == "resnet" else plain
            for split, style in (("train", figures.TRAIN_STYLE), ("test", figures.TEST_STYLE)):
                if split in splits:
                    label = None if net in labelled else runs_lib.label(net)
                    labelled.add(net)
                    ax.plot(*splits[split], color=figures.colour(net), label=label, **style)
        for ax, title in ((plain, "plain nets"), (resnet, "ResNets")):
            ax.set_title(title)
            ax.set_xlabel("iterations")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="upper right")
        plain.set_ylabel("error (%)  dashed: training, bold: test")
        self._show()

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=80)
        return buffer.getvalue()

    def _show(self) -> None:
        try:
            from IPython import display, get_ipython
        except ImportError:
            return
        if get_ipython() is None:
            return
        image = display.Image(data=self.png(), format="png")
        if self._display is None:
            self._display = display.display(image, display_id=True)
        else:
            self._display.update(image)
