"""The degradation experiment's report from a sweep directory (experiments/sweeps.py):
Figure 1, Figure 6, per-stage gradient diagnostics, the lesion studies and loss landscapes of
the runs that have them, and report.md with Table 6.

    from cnn_jax import report
    paths = report.write("runs/figure6")  # figure1.png, figure6.png, diagnostics.png, report.md
"""

from etils import epath

from cnn_jax.report import analyses, figures, tables
from cnn_jax.report.runs import Sweep, load_sweep

__all__ = ["FIGURES", "Sweep", "load_sweep", "write"]

# File name, title in report.md, drawing function.
FIGURES = (
    ("figure1.png", "Figure 1 (plain-20 vs plain-56)", figures.figure1),
    ("figure6.png", "Figure 6 (plain nets, ResNets, ResNet-110 vs 1202)", figures.figure6),
    ("diagnostics.png", "Per-stage gradient norms and residual ratios", figures.diagnostics),
    ("lesion.png", "Lesion study (Veit et al. 2016)", analyses.lesion_figure),
    ("landscape.png", "Loss landscapes (Li et al. 2018)", analyses.landscape_figure),
)


def write(sweep_dir: epath.PathLike, out_dir: epath.PathLike | None = None) -> list[epath.Path]:
    """Draws the figures the sweep has nets for and writes report.md into `out_dir` (default
    `sweep_dir`); returns the files written. Raises DataError when no run has finished."""
    sweep = load_sweep(sweep_dir)
    out = epath.Path(out_dir if out_dir is not None else sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, drawn = [], {}
    for name, title, draw in FIGURES:
        drawn[title] = name if draw(sweep, out / name) else None
        if drawn[title]:
            written.append(out / name)
    (out / "report.md").write_text(tables.markdown(sweep, drawn, analyses.lines(sweep)))
    return written + [out / "report.md"]
