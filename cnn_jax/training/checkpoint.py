"""Orbax checkpoints of the train state, restorable onto any device layout."""

import dataclasses
import itertools
import json
import logging
import zlib
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from cnn_jax import models
from cnn_jax.data import catalog
from cnn_jax.errors import CheckpointError
from cnn_jax import sharding
from cnn_jax.training import optim, state as state_lib
from cnn_jax.training import workdir as workdir_lib
from cnn_jax.training.state import TrainState

log = logging.getLogger(__name__)

CHECKSUMS = "crc32"  # in each checkpoint's custom metadata


class Checkpoints:
    """The `checkpoints/` folder of a workdir: `keep` most recent steps, written asynchronously,
    each with the CRC-32 of every array, verified on restore. The folder is created by the
    first save."""

    def __init__(self, directory: epath.PathLike, keep: int = 3):
        directory = epath.Path(directory)
        self.directory = directory if "://" in str(directory) else directory.absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=False),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, state: TrainState) -> None:
        """Starts writing `state` at its step; `wait()` or `close()` to be sure it is on disk."""
        step = int(state.step)
        if step not in self._manager.all_steps():
            self._manager.save(step, args=ocp.args.StandardSave(state), force=True,
                               custom_metadata={CHECKSUMS: checksums(state)})

    def restore(self, target: TrainState, step: int | None = None) -> TrainState:
        """Restores step `step` (default: latest) with the shapes and shardings of `target`
        (arrays or jax.ShapeDtypeStructs), whatever the devices that wrote it, and checks
        that its arrays are those that were saved."""
        step = self.latest_step() if step is None else step
        if step is None or step not in self.all_steps():
            raise CheckpointError(
                f"No checkpoint {'' if step is None else step} in {self.directory}."
            )
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            state = self._restore_tree(step, abstract)
            saved = self._manager.metadata(step).custom_metadata or {}
        except Exception as e:  # Orbax raises many types for missing, truncated or foreign files.
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(
                f"Checkpoint {self.directory / str(step)} cannot be restored: {reason[:300]}"
            ) from None
        if CHECKSUMS in saved:  # absent from checkpoints written by other programs
            restored = checksums(state)
            for name, crc in saved[CHECKSUMS].items():
                if restored.get(name) != crc:
                    raise CheckpointError(
                        f"Checkpoint {self.directory / str(step)} is corrupt: {name} does not "
                        "have the checksum it was saved with."
                    )
        return state

    def _restore_tree(self, step: int, abstract: TrainState) -> TrainState:
        """Orbax's restore of `abstract`'s tree. A checkpoint written before the state held
        `ema_params` restores into a run without an average (an empty one)."""
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except ValueError as error:
            if abstract.ema_params:
                raise
            fields = {f.name: getattr(abstract, f.name) for f in dataclasses.fields(abstract)}
            del fields["ema_params"]
            try:
                restored = self._manager.restore(step, args=ocp.args.StandardRestore(fields))
            except Exception:
                raise error from None
            return abstract.replace(**restored)

    def restore_latest(self, target: TrainState) -> TrainState | None:
        """The newest checkpoint that restores intact (None if there is none). Newer ones that
        do not are moved aside to `<step>.unrestorable`, one line each; nothing is deleted."""
        failures = []
        for step in sorted(self.all_steps(), reverse=True):
            try:
                state = self.restore(target, step)
            except CheckpointError as e:
                failures.append((step, e))
                continue
            for bad_step, error in failures:
                aside = self._move_aside(bad_step)
                log.warning("%s Moved it to %s; resuming from step %d.", error, aside, step)
            return state
        if failures:
            raise CheckpointError(
                f"No checkpoint in {self.directory} can be restored "
                f"(the newest: {failures[0][1]}); nothing in it was changed: "
                "use a new --workdir to start again."
            )
        return None

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

    def _move_aside(self, step: int) -> epath.Path:
        aside = self.directory / f"{step}.unrestorable"
        if jax.process_index() == 0:
            for i in itertools.count(1):
                if not aside.exists():
                    break
                aside = self.directory / f"{step}.unrestorable{i}"
            (self.directory / str(step)).rename(aside)
        ocp.multihost.sync_global_processes(f"cnn_jax_moved_aside_{step}")
        self._manager.reload()
        return aside


def checksums(state: TrainState) -> dict[str, int]:
    """The CRC-32 of every array of a (replicated) state, by its path in the tree."""
    leaves = jax.tree_util.tree_leaves_with_path(state)
    local = jax.device_get(
        [x.addressable_data(0) if isinstance(x, jax.Array) else x for _, x in leaves]
    )
    return {jax.tree_util.keystr(path): zlib.crc32(np.ascontiguousarray(x).tobytes())
            for (path, _), x in zip(leaves, local)}


def read_config(workdir: epath.PathLike) -> ml_collections.ConfigDict:
    """The config a workdir's run was started with (its config.json)."""
    path = epath.Path(workdir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; is {workdir} a training workdir?")
    return ml_collections.ConfigDict(workdir_lib.with_later_fields(json.loads(path.read_text())))


def restore_state(
    workdir: epath.PathLike, step: int | None = None
) -> tuple[nn.Module, TrainState, ml_collections.ConfigDict]:
    """The model, the train state at `step` (default: latest) and the config of a workdir,
    restored replicated over all present devices."""
    config = read_config(workdir)
    model = models.from_config(config.model, catalog.num_classes(config.dataset))
    mesh = sharding.make_mesh()
    target = state_lib.abstract(
        model,
        optim.direction(config),
        config,
        catalog.input_shape(config),
        catalog.mean_shape(config),
        mesh,
    )
    ckpts = Checkpoints(epath.Path(workdir) / "checkpoints", keep=config.checkpoint.keep)
    state = ckpts.restore(target, step)
    ckpts.close()
    return model, state, config


def load(
    workdir: epath.PathLike, step: int | None = None, averaged: bool = True
) -> tuple[nn.Module, dict[str, Any], ml_collections.ConfigDict]:
    """`(model, variables, config)` of a run, for notebooks: `model.apply(variables, x)`.

    A run with `train.ema_decay` > 0 gives its averaged parameters, which its evaluation
    used; `averaged=False` gives the trained ones.

    Inputs are normalized as in training, uint8 images scaled to [0, 1] minus the training
    set's per-pixel mean: `cnn_jax.data.augment.normalize(images,
    variables["data"]["pixel_mean"])` (the model ignores the `data` collection).
    """
    model, state, config = restore_state(workdir, step)
    variables = state.eval_variables if averaged else state.variables
    return model, variables | {"data": {"pixel_mean": state.pixel_mean}}, config
