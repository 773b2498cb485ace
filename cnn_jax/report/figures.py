"""He et al. 2015's Figures 1 and 6 from a sweep, and per-stage gradient diagnostics.

Each function draws one PNG with matplotlib's object API (no pyplot, no display needed) and
returns False, writing nothing, when the sweep has none of the nets it shows.
"""

import re

from etils import epath
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from cnn_jax.report import runs as runs_lib
from cnn_jax.report.runs import Sweep

# Colours of Figure 6 by depth: 20 yellow, 32 cyan, 44 green, 56 red, 110 black.
COLOURS = {
    20: "#e8a400", 32: "#1fb4d2", 44: "#2ca02c", 56: "#d62728", 110: "#111111", 1202: "#7b3fb5",
}
_OTHER_COLOURS = ("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#1f77b4")
_STAGE_COLOURS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#c8b000", "#d62728")
TRAIN_STYLE = {"linestyle": "--", "linewidth": 1.0}
TEST_STYLE = {"linestyle": "-", "linewidth": 2.2}


def figure1(sweep: Sweep, path: epath.PathLike) -> bool:
    """Figure 1: training error (left, dashed) and test error (right, bold) of plain-20 and
    plain-56 against iterations; mean over seeds, shaded min-max band."""
    nets = [n for n in (sweep.net("plain", 20), sweep.net("plain", 56)) if n]
    if not nets:
        return False
    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    scale = _step_scale(sweep, nets)
    for net in nets:
        _plot(left, sweep, net, "train", TRAIN_STYLE, scale)
        _plot(right, sweep, net, "test", TEST_STYLE, scale)
    for ax, what in ((left, "training error (%)"), (right, "test error (%)")):
        _decorate(ax, scale, ylabel=what)
        ax.legend(handles=[_net_handle(n) for n in nets], loc="best")
    fig.suptitle("Figure 1: plain nets, " + _seeds_note(sweep, nets))
    _save(fig, path, dpi=120)
    return True


def figure6(sweep: Sweep, path: epath.PathLike) -> bool:
    """Figure 6: plain nets (left), ResNets (middle), ResNet-110 vs ResNet-1202 (right);
    dashed = training error, bold = test error; mean over seeds, min-max band. A panel
    shows the nets the sweep has and is left out when it has none of them."""
    plain = [sweep.net("plain", d) for d in sweep.depths("plain")]
    resnets = [sweep.net("resnet", d) for d in sweep.depths("resnet") if d < 1000]
    deep = [n for n in (sweep.net("resnet", 110), sweep.net("resnet", 1202)) if n]
    panels = [(t, nets) for t, nets in (
        ("plain nets", plain), ("ResNets", resnets), ("ResNet-110 vs ResNet-1202", deep),
    ) if nets]
    if not panels:
        return False
    fig = Figure(figsize=(5 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    scale = _step_scale(sweep, [n for _, nets in panels for n in nets])
    style_handles = [Line2D([], [], color="grey", label="training", **TRAIN_STYLE),
                     Line2D([], [], color="grey", label="test", **TEST_STYLE)]
    for ax, (title, nets) in zip(axes, panels):
        for net in nets:
            _plot(ax, sweep, net, "train", TRAIN_STYLE, scale)
            _plot(ax, sweep, net, "test", TEST_STYLE, scale)
        _decorate(ax, scale, ylabel="error (%)")
        ax.set_title(title)
        ax.legend(handles=[_net_handle(n) for n in nets] + style_handles, loc="best", fontsize=8)
    fig.suptitle("Figure 6: " + _seeds_note(sweep, [n for _, nets in panels for n in nets]))
    _save(fig, path, dpi=120)
    return True


def diagnostics(sweep: Sweep, path: epath.PathLike) -> bool:
    """Per-stage gradient norms against iterations, plain and ResNet of one depth side by side
    (a row per depth, shared log scale), and each ResNet stage's mean ||F(x)|| / ||x||.
    Vanishing gradients would show as early-stage norms far below the head's in the plain
    nets; He et al. 2015 (section 4.1) argue BN keeps them healthy."""
    depths = sorted(set(sweep.depths("plain")) | set(sweep.depths("resnet")))
    rows = [(d, sweep.net("plain", d), sweep.net("resnet", d)) for d in depths]
    rows = [r for r in rows if any(n and runs_lib.diagnostic_keys(sweep.runs[n], "grad_norm/")
                                   for n in r[1:])]
    if not rows:
        return False
    ratios = any(
        n and runs_lib.diagnostic_keys(sweep.runs[n], "residual_ratio/") for _, _, n in rows
    )
    columns = 3 if ratios else 2
    fig = Figure(figsize=(4.2 * columns, 2.8 * len(rows) + 0.6), layout="constrained")
    grid = fig.subplots(len(rows), columns, squeeze=False)
    scale = _step_scale(sweep, [n for row in rows for n in row[1:] if n])
    for axes, (depth, plain, resnet) in zip(grid, rows):
        axes[0].sharey(axes[1])
        for ax, net, kind in ((axes[0], plain, "plain"), (axes[1], resnet, "ResNet")):
            _stage_panel(ax, sweep, net, "grad_norm/", scale, f"{kind}-{depth}: gradient norm")
        if ratios:
            _stage_panel(axes[2], sweep, resnet, "residual_ratio/", scale,
                         f"ResNet-{depth}: ||F(x)|| / ||x||", log=False)
    fig.suptitle("Per-stage diagnostics on a fixed training batch, mean over seeds")
    _save(fig, path, dpi=110)
    return True


def _save(fig: Figure, path: epath.PathLike, dpi: int) -> None:
    with epath.Path(path).open("wb") as f:  # also on object stores (gs://)
        fig.savefig(f, format="png", dpi=dpi)


def _stage_panel(ax: Axes, sweep: Sweep, net: str | None, prefix: str, scale: float, title: str,
                 log: bool = True) -> None:
    keys = runs_lib.diagnostic_keys(sweep.runs[net], prefix) if net else []
    if not keys:
        ax.set_axis_off()
        if prefix == "grad_norm/":
            ax.text(0.5, 0.5, f"{title.split(':')[0]}: not in sweep", ha="center", va="center",
                    transform=ax.transAxes, color="grey")
        return
    positive = True
    for key in keys:
        curve = runs_lib.curve(sweep.runs[net], key, "diagnostics")
        if curve is None:
            continue
        positive &= bool((curve.low > 0).all())
        stage = key[len(prefix):]
        _draw(ax, curve, scale, _stage_colour(stage), label=stage)
    if log and positive:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(_xlabel(scale))
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _stage_colour(stage: str) -> str:
    """One colour per stage in every panel: stem, stage1, stage2, ..., head."""
    match = re.fullmatch(r"stage(\d+)", stage)
    index = 0 if stage == "stem" else int(match[1]) if match else 4 if stage == "head" else 5
    return _STAGE_COLOURS[min(index, len(_STAGE_COLOURS) - 1)]


def _plot(ax: Axes, sweep: Sweep, net: str, split: str, style: dict, scale: float) -> None:
    curve = runs_lib.curve(sweep.runs[net], "error", split)
    if curve is None:
        return
    _draw(ax, curve, scale, colour(net), **style)


def _draw(ax: Axes, curve: runs_lib.Curve, scale: float, colour: str, **style) -> None:
    """The mean over seeds, the min-max band, and markers where there are too few points for
    a line."""
    steps = curve.steps / scale
    marker = "o" if len(steps) < 3 else None
    ax.plot(steps, curve.mean, color=colour, marker=marker, markersize=4, **style)
    if curve.seeds > 1:
        ax.fill_between(steps, curve.low, curve.high, color=colour, alpha=0.15, linewidth=0)


def _decorate(ax: Axes, scale: float, ylabel: str) -> None:
    ax.set_xlabel(_xlabel(scale))
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)


def colour(net: str) -> str:
    info = runs_lib.net_info(net)
    if info and info[1] in COLOURS:
        return COLOURS[info[1]]
    return _OTHER_COLOURS[sum(map(ord, net)) % len(_OTHER_COLOURS)]


def _net_handle(net: str) -> Line2D:
    return Line2D([], [], color=colour(net), linewidth=2.2, label=runs_lib.label(net))


def _step_scale(sweep: Sweep, nets: list[str]) -> float:
    """1e4 (the paper's "iter. (1e4)") for runs of 10k steps or more, else 1."""
    last = max((r.summary.get("step") or 0 for n in nets for r in sweep.runs[n]), default=0)
    return 1e4 if last >= 1e4 else 1.0


def _xlabel(scale: float) -> str:
    return "iter. (1e4)" if scale == 1e4 else "iterations"


def _seeds_note(sweep: Sweep, nets: list[str]) -> str:
    counts = sorted({len(sweep.runs[n]) for n in nets})
    seeds = "/".join(map(str, counts))
    band = ", band = min-max over seeds" if counts[-1] > 1 else ""
    return f"mean over {seeds} seed(s){band}"
