"""The lesion study of Veit, Wilber and Belongie 2016 ("Residual networks behave like
ensembles of relatively shallow networks", section 4).

A trained net is evaluated on the test set with blocks removed at test time, BatchNorm
keeping its running statistics: each single block in turn (their Figure 3: a ResNet barely
notices, a plain net drops to chance), k random blocks at once for k = 1..n (Figure 5: the
error of a ResNet grows smoothly), and optionally adjacent blocks swapped (Figure 5b).
Deleting a residual block leaves its shortcut: y = x, or option A's subsampled, zero-padded
x in a block that halves the map size; a plain block becomes the identity, and a plain block
that changes the shape cannot be deleted. All lesions run through one compiled evaluation,
mapped over `keep` masks (`CifarResNet.__call__`), in which a deleted block is not computed.
"""

import functools
import itertools
from typing import Any

import jax
import numpy as np

from cnn_jax.analysis import trained
from cnn_jax.analysis.trained import TrainedNet


def single_masks(deletable: np.ndarray) -> np.ndarray:
    """One keep mask per deletable block, deleting only that block."""
    blocks = np.flatnonzero(deletable)
    masks = np.ones((len(blocks), len(deletable)), np.float32)
    masks[np.arange(len(blocks)), blocks] = 0
    return masks


def random_masks(
    deletable: np.ndarray, deleted: int, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """`draws` keep masks, each deleting `deleted` deletable blocks drawn without replacement."""
    blocks = np.flatnonzero(deletable)
    masks = np.ones((draws, len(deletable)), np.float32)
    for mask in masks:
        mask[rng.choice(blocks, deleted, replace=False)] = 0
    return masks


def swap_pairs(net: TrainedNet) -> list[tuple[str, str]]:
    """Adjacent blocks of one stage with the same input and output shapes (every pair but
    those with the first block of a stage that halves the map size)."""
    blocks, keeps_shape = net.blocks, net.keeps_shape
    return [
        (a, b)
        for i, (a, b) in enumerate(itertools.pairwise(blocks))
        if a.split("_")[0] == b.split("_")[0] and keeps_shape[i]
    ]


def swapped(variables: dict[str, Any], pair: tuple[str, str]) -> dict[str, Any]:
    """The variables with the two blocks' parameters and statistics exchanged."""
    a, b = pair
    return {collection: {**tree, a: tree[b], b: tree[a]} for collection, tree in variables.items()}


def study(
    net: TrainedNet,
    draws: int = 3,
    max_deleted: int | None = None,
    swaps: bool = False,
    seed: int = 0,
    chunk: int = 8,
    parallel: int = 1,
    examples: int = 0,
) -> dict[str, Any]:
    """The lesion study of `net` on the first `examples` test images (0: the test images its
    training evaluated, eval.max_examples of them).

    Returns the JSON record: baseline_error, blocks (each with its error when deleted alone,
    null where it cannot be), k_curve (errors of `draws` random sets of k deleted blocks, k up
    to `max_deleted`, default all deletable blocks), swaps if asked, and the timing.
    """
    config = net.config
    split = trained.put_split(
        net, "test", examples or config.eval.max_examples, config.eval.batch_size
    )
    deletable = net.deletable
    ks = list(range(1, (max_deleted or int(deletable.sum())) + 1))
    ks = [k for k in ks if k <= deletable.sum()]
    rng = np.random.default_rng(seed)
    curve = [random_masks(deletable, k, draws, rng) for k in ks]
    singles = single_masks(deletable)
    masks = np.concatenate([np.ones((1, len(deletable)), np.float32), singles, *curve])

    def evaluate(keep, shared):
        variables, pixel_mean, data = shared
        return trained.split_sums(
            functools.partial(net.model.apply, keep=keep), variables, pixel_mean, data
        )

    label = f"lesions of {config.model.name}"
    shared = (net.variables, net.pixel_mean, split)
    result = trained.map_variants(evaluate, masks, shared, chunk, parallel, label)
    errors, losses = result.error.tolist(), result.loss.tolist()
    single = dict(zip(np.flatnonzero(deletable), zip(errors[1:], losses[1:])))
    start = 1 + len(singles)
    record = {
        "net": config.model.name,
        "seed": config.seed,
        "dataset": config.dataset.name,
        "step": net.step,
        "examples": split.size,
        "baseline_error": errors[0],
        "baseline_loss": losses[0],
        "blocks": [
            {"block": name, "error": single[i][0], "loss": single[i][1]}
            if i in single
            else {"block": name, "error": None, "loss": None, "deletable": False}
            for i, name in enumerate(net.blocks)
        ],
        "k_curve": [
            {"deleted": k, "errors": errors[start + j * draws : start + (j + 1) * draws]}
            for j, k in enumerate(ks)
        ],
        "draws": draws,
        "lesion_seed": seed,
        "timing": _timing(result, len(masks)),
    }
    if swaps:
        pairs = swap_pairs(net)
        stacked = jax.tree.map(
            lambda *x: np.stack(x), *[swapped(jax.device_get(net.variables), p) for p in pairs]
        )

        def evaluate_swapped(variables, shared):
            pixel_mean, data = shared
            return trained.split_sums(net.model.apply, variables, pixel_mean, data)

        result = trained.map_variants(
            evaluate_swapped,
            stacked,
            (net.pixel_mean, split),
            chunk,
            parallel,
            f"swaps of {config.model.name}",
        )
        record["swaps"] = [
            {"blocks": list(p), "error": e} for p, e in zip(pairs, result.error.tolist())
        ]
        record["timing_swaps"] = _timing(result, len(pairs))
    return record


def single_block_increase(record: dict[str, Any]) -> float:
    """Mean rise of the test error, in points, over the deletable blocks deleted alone."""
    errors = [b["error"] for b in record["blocks"] if b["error"] is not None]
    return float(np.mean(errors) - record["baseline_error"]) if errors else float("nan")


def one_per_net(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The record of each net's lowest seed, by depth, plain before ResNet (side by side)."""
    from cnn_jax.report import runs

    first: dict[str, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: r["seed"]):
        first.setdefault(record["net"], record)
    return [
        first[net] for net in sorted(first, key=lambda net: (runs.net_info(net) or ("", 0))[::-1])
    ]


def _timing(result: trained.Evaluated, lesions: int) -> dict[str, float]:
    return {
        "lesions": lesions,
        "compile_s": result.compile_s,
        "seconds": result.seconds,
        "images_per_sec": result.images_per_sec,
    }
