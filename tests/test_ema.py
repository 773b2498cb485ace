"""Parameter averaging (`train.ema_decay`): the average the train state keeps, the variables
evaluation uses, and checkpoints and resumes with and without it."""

import dataclasses
import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from cnn_jax import models
from cnn_jax.errors import ConfigError
from cnn_jax import sharding
from cnn_jax.training import checkpoint, optim, steps, train
from cnn_jax.training import state as state_lib
from experiments import configs
from tests.test_train import idx_config

IMAGE = (32, 32, 1)


def tiny_state(config):
    model = models.from_config(config.model, 10)
    mesh = sharding.make_mesh()
    optimizer = optim.direction(config)
    state = state_lib.create(model, optimizer, config, np.zeros(IMAGE, np.float32), mesh)
    return model, optimizer, mesh, state


def batch(seed: int, size: int = 16):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(size, *IMAGE)).astype(np.float32), rng.integers(0, 10, size).astype(
        np.int32
    )


def test_the_average_follows_its_formula_over_a_few_steps(idx_dir):
    decay = 0.5
    config = idx_config(idx_dir, **{"train.ema_decay": decay})
    model, optimizer, mesh, state = tiny_state(config)
    update = jax.jit(steps.make_update(model, optimizer, config, mesh))

    expected = jax.device_get(state.params)  # the average starts at the initial parameters
    jax.tree.map(np.testing.assert_array_equal, state.ema_params, expected)
    for step in range(3):
        state, _ = update(state, *batch(step))
        params = jax.device_get(state.params)
        expected = jax.tree.map(lambda a, p: decay * a + (1 - decay) * p, expected, params)
        jax.tree.map(
            lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7),
            state.ema_params,
            expected,
        )
    moved = [
        float(np.abs(a - p).max())
        for a, p in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(state.params))
    ]
    assert max(moved) > 0  # the average lags the trained parameters


def test_evaluation_uses_the_averaged_parameters(idx_dir):
    config = idx_config(idx_dir, **{"train.ema_decay": 0.9})
    model, optimizer, mesh, state = tiny_state(config)
    update = jax.jit(steps.make_update(model, optimizer, config, mesh))
    for step in range(3):
        state, _ = update(state, *batch(step))
    images, labels = batch(10, 64)
    mask = np.ones(64, bool)

    def evaluate(s):
        return steps.summarize(steps.batch_sums(model, s, images, labels, mask))

    as_averaged = state.replace(params=state.ema_params, ema_params={})
    as_trained = state.replace(ema_params={})
    assert evaluate(state) == evaluate(as_averaged)
    assert evaluate(state)["loss"] != evaluate(as_trained)["loss"]


def test_without_averaging_the_state_holds_no_average(idx_dir):
    config = idx_config(idx_dir)
    assert config.train.ema_decay == 0.0
    model, optimizer, mesh, state = tiny_state(config)
    state, _ = jax.jit(steps.make_update(model, optimizer, config, mesh))(state, *batch(0))
    assert state.ema_params == {}
    assert state.eval_variables["params"] is state.params
    plain = [
        state.step,
        state.seed,
        state.params,
        state.batch_stats,
        state.opt_state,
        state.pixel_mean,
        state.warming_up,
    ]
    assert len(jax.tree.leaves(state)) == len(jax.tree.leaves(plain))


def test_a_checkpoint_keeps_the_average_and_a_resume_is_exact(tmp_path, idx_dir):
    averaged = {"train.ema_decay": 0.9}
    train.train_and_evaluate(idx_config(idx_dir, **averaged), tmp_path / "straight")
    train.train_and_evaluate(
        idx_config(idx_dir, **averaged, **{"train.steps": 7}), tmp_path / "resumed"
    )
    train.train_and_evaluate(
        idx_config(idx_dir, **averaged), tmp_path / "resumed", allow_config_change=True
    )

    _, state, _ = checkpoint.restore_state(tmp_path / "straight")
    _, resumed, _ = checkpoint.restore_state(tmp_path / "resumed")
    jax.tree.map(np.testing.assert_array_equal, resumed.ema_params, state.ema_params)
    jax.tree.map(np.testing.assert_array_equal, resumed.params, state.params)
    # `load` gives the averaged parameters, which evaluation used, or on request the trained ones.
    _, variables, _ = checkpoint.load(tmp_path / "straight")
    _, trained, _ = checkpoint.load(tmp_path / "straight", averaged=False)
    jax.tree.map(np.testing.assert_array_equal, variables["params"], state.ema_params)
    jax.tree.map(np.testing.assert_array_equal, trained["params"], state.params)


def test_a_checkpoint_from_before_averaging_restores_without_an_average(tmp_path, idx_dir):
    config = idx_config(idx_dir)
    _, _, _, state = tiny_state(config)
    fields = {
        f.name: getattr(state, f.name) for f in dataclasses.fields(state) if f.name != "ema_params"
    }
    with ocp.CheckpointManager(tmp_path) as manager:  # the state as checkpoints held it before
        manager.save(5, args=ocp.args.StandardSave(fields))
    restored = checkpoint.Checkpoints(tmp_path).restore(state)
    assert restored.ema_params == {}
    jax.tree.map(np.testing.assert_array_equal, restored.params, state.params)


def test_a_config_json_without_the_field_resumes_as_a_run_without_averaging(tmp_path, idx_dir):
    train.train_and_evaluate(idx_config(idx_dir, **{"train.steps": 6}), tmp_path)
    path = tmp_path / "config.json"
    older = json.loads(path.read_text())
    del older["train"]["ema_decay"]
    path.write_text(json.dumps(older))

    with pytest.raises(ConfigError, match="another train.ema_decay"):
        train.train_and_evaluate(idx_config(idx_dir, **{"train.ema_decay": 0.9}), tmp_path)
    summary = train.train_and_evaluate(idx_config(idx_dir), tmp_path, allow_config_change=True)
    assert summary["step"] == 12


def test_a_decay_of_one_or_more_is_refused(tmp_path, idx_dir):
    with pytest.raises(ConfigError, match="train.ema_decay must be 0"):
        train.train_and_evaluate(idx_config(idx_dir, **{"train.ema_decay": 1.0}), tmp_path)


@pytest.mark.parametrize("name", ["imagenet_googlenet", "imagenet_inception_v4"])
def test_googlenet_and_inception_v4_evaluate_averaged_parameters(name):
    """GoogLeNet's Polyak averaging (section 6) and Inception-v4's running average (section 4)."""
    assert configs.get_config(name).train.ema_decay == 0.9999
    assert configs.get_config("imagenet_resnet50").train.ema_decay == 0.0
