"""Figures of the lesion study and the loss landscape (matplotlib's object API, no display)."""

from typing import Any

import numpy as np
from etils import epath
from matplotlib.figure import Figure

CHANCE_ERROR = 90.0  # ten classes
CONTOUR_LEVELS = np.arange(0.1, 10.0, 0.5)  # Li et al. 2018's plots: vmin 0.1, vmax 10, step 0.5
SURFACE_CLIP = 10.0


def net_label(net: str) -> str:
    """cifar_resnet56 -> ResNet-56, cifar_plain20 -> plain-20."""
    from cnn_jax.report import runs

    return runs.label(net)


def lesion(records: list[dict[str, Any]], path: epath.PathLike) -> bool:
    """One column per net (plain and ResNet side by side): test error with each single block
    deleted against the block (top, baseline dashed) and with k random blocks deleted
    (bottom: mean over the draws, min-max band). False, writing nothing, without records."""
    if not records:
        return False
    fig = Figure(figsize=(3.2 * len(records), 6), layout="constrained")
    axes = np.asarray(fig.subplots(2, len(records), sharey=True, squeeze=False))
    for column, record in enumerate(records):
        top, bottom = axes[:, column]
        name = f"{net_label(record['net'])}, seed {record['seed']}"
        errors = np.array([np.nan if b["error"] is None else b["error"] for b in record["blocks"]])
        blocks = np.arange(1, len(errors) + 1)
        top.plot(blocks, errors, "o-", markersize=3, color=_colour(record["net"]))
        missing = blocks[np.isnan(errors)]
        top.plot(
            missing,
            np.full(len(missing), record["baseline_error"]),
            "x",
            color="grey",
            label="not deletable" if len(missing) else None,
        )
        top.axhline(
            record["baseline_error"], linestyle="--", color="black", linewidth=1, label="no lesion"
        )
        top.set_title(name, fontsize=10)
        top.set_xlabel("deleted block")
        k = np.array([row["deleted"] for row in record["k_curve"]])
        curve = np.array([row["errors"] for row in record["k_curve"]])
        bottom.plot(k, curve.mean(1), "o-", markersize=3, color=_colour(record["net"]))
        bottom.fill_between(
            k, curve.min(1), curve.max(1), alpha=0.2, color=_colour(record["net"]), linewidth=0
        )
        bottom.axhline(record["baseline_error"], linestyle="--", color="black", linewidth=1)
        bottom.set_xlabel("blocks deleted at random")
        for ax in (top, bottom):
            ax.axhline(CHANCE_ERROR, linestyle=":", color="grey", linewidth=1)
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("test error (%), one block deleted")
    axes[1, 0].set_ylabel(f"test error (%), mean of {records[0]['draws']} draws")
    axes[0, 0].legend(fontsize=7, loc="center left")
    fig.suptitle("Lesion study (Veit et al. 2016): blocks deleted at test time; dotted: chance")
    _save(fig, path)
    return True


def landscape_contour(data: dict[str, Any], path: epath.PathLike, title: str) -> None:
    """Contours of the training loss over the plane of the two directions (Li et al. Figure 5)."""
    fig = Figure(figsize=(4.5, 4), layout="constrained")
    _contour(fig.subplots(), data, title)
    _save(fig, path)


def landscape_surface(data: dict[str, Any], path: epath.PathLike, title: str) -> None:
    """The training loss as a 3-D surface over the plane, clipped at SURFACE_CLIP."""
    fig = Figure(figsize=(5, 4.2), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    a, b = np.meshgrid(data["alphas"], data["betas"], indexing="ij")
    loss = np.minimum(data["loss"], SURFACE_CLIP)
    ax.plot_surface(a, b, loss, cmap="viridis", linewidth=0, antialiased=True)
    ax.set_xlabel("d1")
    ax.set_ylabel("d2")
    ax.set_zlabel("training loss")
    ax.set_title(title, fontsize=10)
    _save(fig, path)


def landscapes(items: list[tuple[str, dict[str, Any]]], path: epath.PathLike) -> bool:
    """Contours of several nets' landscapes in one figure, plain nets on the top row and ResNets
    below, by depth, plus their 1-D curves along d1 (right). False without items."""
    if not items:
        return False
    from cnn_jax.report import runs

    depths = sorted({runs.net_info(net)[1] for net, _ in items if runs.net_info(net)})
    kinds = ("plain", "resnet")
    fig = Figure(figsize=(3.4 * len(depths) + 4, 6.4), layout="constrained")
    axes = np.asarray(fig.subplots(2, len(depths) + 1, squeeze=False))
    by_net = {runs.net_info(net): (net, data) for net, data in reversed(items)}
    for row, kind in enumerate(kinds):
        for column, depth in enumerate(depths):
            ax = axes[row, column]
            if (kind, depth) not in by_net:
                ax.set_axis_off()
                continue
            net, data = by_net[(kind, depth)]
            _contour(ax, data, net_label(net))
        curves = axes[row, -1]
        for depth in depths:
            if (kind, depth) in by_net:
                net, data = by_net[(kind, depth)]
                curves.plot(
                    data["curve_alphas"],
                    data["curve_loss"],
                    color=_colour(net),
                    label=net_label(net),
                )
        curves.set_yscale("log")
        curves.set_xlabel("step along d1")
        curves.set_ylabel("training loss")
        curves.grid(alpha=0.3)
        curves.legend(fontsize=7)
    fig.suptitle("Loss landscapes (Li et al. 2018): filter-normalised random directions, same seed")
    _save(fig, path)
    return True


def _contour(ax, data: dict[str, Any], title: str) -> None:
    a, b = np.meshgrid(data["alphas"], data["betas"], indexing="ij")
    contours = ax.contour(a, b, data["loss"], levels=CONTOUR_LEVELS, cmap="viridis", linewidths=0.8)
    ax.clabel(contours, contours.levels[::4], fontsize=6)
    ax.plot([0], [0], "k+")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("d1")
    ax.set_ylabel("d2")
    ax.set_aspect("equal")


def _colour(net: str) -> str:
    from cnn_jax.report import figures

    return figures.colour(net)


def _save(fig: Figure, path: epath.PathLike) -> None:
    with epath.Path(path).open("wb") as f:
        fig.savefig(f, format="png", dpi=110)
