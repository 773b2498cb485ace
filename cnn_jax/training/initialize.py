"""Starting a run from another run's (or a converted) checkpoint: the config's `init` section.

    init.workdir   a training workdir or a converted checkpoint ("" = fresh initialization)
    init.step      its checkpoint to read (-1 = the latest)
    init.include   regular expressions: copy only the leaves they name (empty = every leaf)
    init.exclude   regular expressions: never copy the leaves they name
    init.rename    (source, destination) pairs of regular expressions: the source's leaves
                   under `source` go to `destination` (re.sub), e.g. between different nets

Paths are the variables' module paths joined by "/" without the collection, e.g.
"conv3_2/kernel" or "stage1_block1/BatchNorm_0/mean". A pattern names a leaf when it matches
(re.fullmatch) the leaf's path or the path of one of its modules, so "fc6" names fc6's kernel
and bias, and "bn1_1" a BatchNorm layer's scale, bias and running statistics: BN statistics
come with their layers. Include, exclude and rename read the source's paths.

Leaves that are not copied keep their fresh initialization. A source leaf with no
counterpart in the new net is skipped (and named in the log); a classifier whose number of
classes differs (the last axis of its kernel and bias) is left fresh; any other shape that
differs is an error naming the path. A resumed run never reads `init`: its own checkpoint
wins (see `cnn_jax.training.train`).
"""

import logging
import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_jax.data import catalog
from cnn_jax.errors import ConfigError
from cnn_jax.training import checkpoint
from cnn_jax.training.state import TrainState

log = logging.getLogger(__name__)

COLLECTIONS = ("params", "batch_stats")


def section(workdir: str = "", include: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
    """A config's `init` section; by default a fresh initialization."""
    return ml_collections.ConfigDict(
        {"workdir": workdir, "step": -1, "include": include, "exclude": (), "rename": ()}
    )


def flatten(variables: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """{(collection, "module/.../leaf"): array} of a variables dict's params and batch_stats."""
    flat = {}
    for collection in COLLECTIONS:
        for path, leaf in jax.tree_util.tree_flatten_with_path(variables.get(collection, {}))[0]:
            flat[(collection, "/".join(str(k.key) for k in path))] = leaf
    return flat


def unflatten(flat: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """The inverse of `flatten`."""
    tree: dict[str, Any] = {}
    for (collection, path), leaf in flat.items():
        node = tree.setdefault(collection, {})
        *modules, name = path.split("/")
        for module in modules:
            node = node.setdefault(module, {})
        node[name] = leaf
    return tree


def names(patterns: tuple[str, ...], path: str) -> bool:
    """Whether one of the regular expressions fully matches `path` or one of its modules."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(re.fullmatch(p, prefix) for p in patterns for prefix in prefixes)


def rename(pairs: tuple[tuple[str, str], ...], path: str) -> str:
    """`path` under the first (source, destination) pair whose source names it."""
    parts = path.split("/")
    for source, destination in pairs:
        for i in range(len(parts), 0, -1):
            prefix = "/".join(parts[:i])
            if re.fullmatch(source, prefix):
                return "/".join([re.sub(f"^(?:{source})$", destination, prefix), *parts[i:]])
    return path


def copy_variables(
    fresh: dict[str, Any],
    source: dict[str, Any],
    init: ml_collections.ConfigDict,
    classes: tuple[int, int] = (0, 0),
) -> tuple[dict[str, Any], list[str]]:
    """`fresh` (params, batch_stats) with the leaves of `source` that `init` selects; returns
    the new variables and the destination paths copied. `classes` = (source's, fresh's)
    numbers of classes, for leaving a classifier of another size fresh."""
    include, exclude = tuple(init.get("include", ())), tuple(init.get("exclude", ()))
    pairs = tuple(tuple(pair) for pair in init.get("rename", ()))
    for pair in pairs:
        if len(pair) != 2:
            raise ConfigError(f"init.rename holds (source, destination) pairs; got {pair!r}.")
    new, copied, unmatched, heads = flatten(fresh), [], [], []
    for pattern in include:
        if not any(names((pattern,), path) for _, path in flatten(source)):
            raise ConfigError(
                f"init.include pattern {pattern!r} names no variable of {init.workdir}."
            )
    for (collection, path), value in flatten(source).items():
        if (include and not names(include, path)) or names(exclude, path):
            continue
        target = (collection, rename(pairs, path))
        if target not in new:
            unmatched.append(path)
            continue
        want, have = tuple(new[target].shape), tuple(np.shape(value))
        if want != have:
            if want[:-1] == have[:-1] and (have[-1], want[-1]) == classes:
                heads.append(target[1])
                continue
            raise ConfigError(
                f"init: {path} of {init.workdir} has shape {have}, but {target[1]} of the new "
                f"net has shape {want}."
            )
        new[target] = value
        copied.append(target[1])
    if unmatched:
        log.info("init: %d variables of %s have no counterpart here: %s", len(unmatched),
                 init.workdir, ", ".join(unmatched))
    if heads:
        log.info("init: classifier %s left fresh (%d classes there, %d here).",
                 ", ".join(heads), *classes)
    return unflatten(new), copied


def from_checkpoint(state: TrainState, config: ml_collections.ConfigDict) -> TrainState:
    """The fresh `state` with what `config.init` copies from its checkpoint (unchanged when
    `init.workdir` is empty or absent)."""
    init = config.get("init")
    if init is None or not init.get("workdir"):
        return state
    step = init.get("step", -1)
    step = None if step < 0 else step
    _, source_state, source_config = checkpoint.restore_state(init.workdir, step)
    classes = (catalog.num_classes(source_config.dataset), catalog.num_classes(config.dataset))
    fresh = {"params": state.params, "batch_stats": state.batch_stats}
    source = {"params": source_state.params, "batch_stats": source_state.batch_stats}
    variables, copied = copy_variables(fresh, source, init, classes)
    total = len(flatten(fresh))
    log.info("init: %d of %d variables from %s at step %d.", len(copied), total, init.workdir,
             int(source_state.step))
    place = lambda new, old: jax.device_put(new, old.sharding) if new is not old else old
    params = jax.tree.map(place, variables["params"], state.params)
    batch_stats = jax.tree.map(place, variables.get("batch_stats", {}), state.batch_stats)
    # A parameter average (train.ema_decay) starts from the copied parameters, as from fresh ones.
    ema_params = jax.tree.map(jnp.copy, params) if state.ema_params else state.ema_params
    return state.replace(params=params, batch_stats=batch_stats, ema_params=ema_params)
