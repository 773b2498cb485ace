"""Orbax checkpoints of the train state, restorable onto any device layout."""

import json
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from cnn_jax import models
from cnn_jax.errors import CheckpointError
from cnn_jax.training import optim, pipelines, sharding, state as state_lib
from cnn_jax.training.state import TrainState


class Checkpoints:
    """The `checkpoints/` folder of a workdir: `keep` most recent steps, written asynchronously."""

    def __init__(self, directory: epath.PathLike, keep: int = 3):
        directory = epath.Path(directory)
        self.directory = directory if "://" in str(directory) else directory.absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, state: TrainState) -> None:
        """Starts writing `state` at its step; `wait()` or `close()` to be sure it is on disk."""
        step = int(state.step)
        if step not in self._manager.all_steps():
            self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def restore(self, target: TrainState, step: int | None = None) -> TrainState:
        """Restores step `step` (default: latest) with the shapes and shardings of `target`
        (arrays or jax.ShapeDtypeStructs), whatever the devices that wrote it."""
        step = self.latest_step() if step is None else step
        if step is None or step not in self.all_steps():
            raise CheckpointError(f"No checkpoint {'' if step is None else step} in {self.directory}.")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as e:  # Orbax raises many types for missing, truncated or foreign files.
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(
                f"Checkpoint {self.directory / str(step)} cannot be restored ({reason[:300]}); "
                f"delete that folder to resume from an earlier checkpoint, or use a new --workdir."
            ) from None

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def read_config(workdir: epath.PathLike) -> ml_collections.ConfigDict:
    """The config a workdir's run was started with (its config.json)."""
    path = epath.Path(workdir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; is {workdir} a training workdir?")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def restore_state(workdir: epath.PathLike, step: int | None = None) -> tuple[nn.Module, TrainState, ml_collections.ConfigDict]:
    """The model, the train state at `step` (default: latest) and the config of a workdir,
    restored replicated over all present devices."""
    config = read_config(workdir)
    model = models.from_config(config.model, pipelines.num_classes(config.dataset.name))
    mesh = sharding.make_mesh()
    target = state_lib.abstract(
        model, optim.direction(config), config, pipelines.input_shape(config), pipelines.mean_shape(config), mesh
    )
    ckpts = Checkpoints(epath.Path(workdir) / "checkpoints", keep=config.checkpoint.keep)
    state = ckpts.restore(target, step)
    ckpts.close()
    return model, state, config


def load(workdir: epath.PathLike, step: int | None = None) -> tuple[nn.Module, dict[str, Any], ml_collections.ConfigDict]:
    """`(model, variables, config)` of a run, for notebooks: `model.apply(variables, x)`.

    Inputs are normalized as in training, uint8 images scaled to [0, 1] minus the training
    set's per-pixel mean: `cnn_jax.data.augment.normalize(images,
    variables["data"]["pixel_mean"])` (the model ignores the `data` collection).
    """
    model, state, config = restore_state(workdir, step)
    return model, state.variables | {"data": {"pixel_mean": state.pixel_mean}}, config
