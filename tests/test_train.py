"""train_and_evaluate end to end: workdir files, exact resumption, and failures from outside."""

import json
import pathlib

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnn_jax.errors import CheckpointError, ConfigError, DivergedError
from cnn_jax.training import checkpoint, metrics, train
from experiments import configs
from tests.conftest import tiny_overrides


def idx_config(idx_dir, name="cifar_resnet20", **extra):
    data = {"dataset.name": "mnist", "dataset.source": "files", "dataset.data_dir": str(idx_dir)}
    return configs.get_config(f"{name}:smoke", tiny_overrides(**data, **extra))


def final_params(workdir):
    _, variables, _ = checkpoint.load(workdir)
    return variables["params"]


def test_tfds_run_writes_every_workdir_file(tmp_path):
    config = configs.get_config("cifar_plain20:smoke", tiny_overrides(**{"dataset.val_split": 16}))
    seen = []  # what a live plot sees
    with tfds.testing.mock_data(num_examples=80):
        summary = train.train_and_evaluate(
            config, tmp_path, on_metrics=lambda workdir, row: seen.append(row)
        )

    assert json.loads((tmp_path / "config.json").read_text())["model"]["name"] == "cifar_plain20"
    rows = metrics.read_metrics(tmp_path)
    assert [r for r in seen if r["split"] != "diagnostics"] == rows
    assert [r for r in seen if r["split"] == "diagnostics"] == metrics.read_metrics(
        tmp_path, "diagnostics.jsonl"
    )
    assert [(r["step"], r["split"]) for r in rows] == [
        (4, "train"),
        (6, "val"),
        (6, "test"),
        (8, "train"),
        (12, "train"),
        (12, "val"),
        (12, "test"),
    ]
    for row in rows:
        assert 0.0 <= row["error"] <= 100.0 and np.isfinite(row["loss"])
    assert all(row["images_per_sec"] > 0 for row in rows if row["split"] == "train")
    assert sorted(
        int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()
    ) == [6, 12]
    assert list(tmp_path.glob("events.out.tfevents.*"))
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved == summary
    assert saved["step"] == 12 and saved["test_error"] == rows[-1]["error"] and saved["params"] > 0


def test_a_finished_run_says_so(tmp_path, idx_dir):
    config = idx_config(idx_dir, **{"train.steps": 4})
    first = train.train_and_evaluate(config, tmp_path)
    again = train.train_and_evaluate(config, tmp_path)
    assert again["already_finished"] and again["test_error"] == first["test_error"]


def test_resumed_run_ends_with_the_parameters_of_an_uninterrupted_one(tmp_path, idx_dir):
    straight = train.train_and_evaluate(idx_config(idx_dir), tmp_path / "straight")
    train.train_and_evaluate(idx_config(idx_dir, **{"train.steps": 7}), tmp_path / "resumed")
    resumed = train.train_and_evaluate(
        idx_config(idx_dir), tmp_path / "resumed", allow_config_change=True
    )

    assert resumed["step"] == straight["step"] == 12
    assert (
        resumed["train_loss"] == straight["train_loss"]
        and resumed["test_error"] == straight["test_error"]
    )
    jax.tree.map(
        np.testing.assert_array_equal,
        final_params(tmp_path / "resumed"),
        final_params(tmp_path / "straight"),
    )
    # Rows written after the checkpoint a run resumes from are replaced, not duplicated.
    steps = [(r["step"], r["split"]) for r in metrics.read_metrics(tmp_path / "resumed")]
    assert len(steps) == len(set(steps))


def test_many_steps_per_call_train_exactly_as_one_step_per_call(tmp_path, idx_dir):
    """Steps run in calls up to the next log, eval or checkpoint step (here 4, 2, 2, 4); the
    metrics written at those steps and the parameters are those of one step per call, up to
    float rounding: XLA may fuse a step inside a loop differently (jax 0.12 does, by 1e-7)."""
    chunked = train.train_and_evaluate(idx_config(idx_dir), tmp_path / "chunked")
    one_per_call = train.train_and_evaluate(
        idx_config(idx_dir, **{"checkpoint.every_steps": 1}), tmp_path / "single"
    )

    def rows(workdir):
        return [
            {k: v for k, v in r.items() if k != "images_per_sec"}
            for r in metrics.read_metrics(workdir)
        ]

    chunked_rows, single_rows = rows(tmp_path / "chunked"), rows(tmp_path / "single")
    assert [(r["step"], r["split"]) for r in chunked_rows][:3] == [
        (4, "train"),
        (6, "test"),
        (8, "train"),
    ]
    assert [{k: v for k, v in r.items() if k != "loss"} for r in chunked_rows] == \
        [{k: v for k, v in r.items() if k != "loss"} for r in single_rows]
    np.testing.assert_allclose(
        [r["loss"] for r in chunked_rows], [r["loss"] for r in single_rows], rtol=1e-5
    )
    assert chunked["test_error"] == one_per_call["test_error"]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 final_params(tmp_path / "chunked"), final_params(tmp_path / "single"))


def test_bfloat16_compute_follows_the_float32_loss_curve(tmp_path, idx_dir):
    """model.dtype=bfloat16 computes in bfloat16 and keeps float32 parameters and statistics."""
    losses = {}
    for dtype in ("float32", "bfloat16"):
        train.train_and_evaluate(idx_config(idx_dir, **{"model.dtype": dtype}), tmp_path / dtype)
        losses[dtype] = [
            r["loss"] for r in metrics.read_metrics(tmp_path / dtype) if r["split"] == "train"
        ]
        _, variables, _ = checkpoint.load(tmp_path / dtype)
        assert {x.dtype for x in jax.tree.leaves(variables)} == {np.dtype("float32")}

    assert losses["float32"][-1] < losses["float32"][0]  # it learns: 2.78 -> 1.89 over 12 steps
    # measured: within 0.2%
    np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=0.01)


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path, idx_dir):
    runs = [
        train.train_and_evaluate(
            idx_config(idx_dir, **{"train.steps": 4, "seed": s}), tmp_path / f"{i}"
        )
        for i, s in enumerate([0, 0, 1])
    ]
    assert runs[0]["train_loss"] == runs[1]["train_loss"] != runs[2]["train_loss"]


def test_short_real_run_on_fashion_mnist_files(tmp_path, fashion_mnist_dir):
    overrides = {
        "dataset.name": "fashion_mnist",
        "dataset.source": "files",
        "dataset.data_dir": str(fashion_mnist_dir),
        "model.width": 8,
        "train.steps": 80,
        "schedule.boundaries": (60, 70),
        "eval.every_steps": 40,
        "checkpoint.every_steps": 40,
    }
    summary = train.train_and_evaluate(
        configs.get_config("cifar_resnet20:smoke", overrides), tmp_path
    )
    assert summary["step"] == 80 and summary["params"] > 0
    assert summary["test_error"] < 50.0  # chance is 90%; 80 steps of batch 64 reach about 32%


def test_a_diverged_state_is_never_checkpointed_and_the_error_names_the_last_finite_one(
    tmp_path, idx_dir
):
    """Lr 1e38 after 3 warm-up steps at 0.01: step 4 leaves parameters of about 1e37, finite
    numbers whose next loss is not; the run stops there and keeps checkpoints 1 to 3."""
    config = idx_config(idx_dir, **{"optimizer.lr": 1e38, "schedule.warmup_steps": 3,
                                    "checkpoint.every_steps": 1, "train.log_every_steps": 1})
    for _ in range(2):  # a second run resumes from the last finite checkpoint and stops alike
        with pytest.raises(
            DivergedError, match="overflowed before step 4; the last finite checkpoint is step 3 in"
        ):
            train.train_and_evaluate(config, tmp_path)
    assert checkpoint.Checkpoints(tmp_path / "checkpoints").all_steps() == [1, 2, 3]
    params = final_params(tmp_path)
    assert max(float(np.abs(p).max()) for p in jax.tree.leaves(params)) < 10


def flip_a_bit(checkpoint_dir: pathlib.Path) -> None:
    """Flips one bit in the middle of the largest array data file of a checkpoint."""
    data = max((p for p in checkpoint_dir.rglob("*") if p.is_file() and p.parent.name == "d"),
               key=lambda p: p.stat().st_size)
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0x10
    data.write_bytes(bytes(content))


def test_a_flipped_bit_in_a_checkpoint_is_found_and_the_run_resumes_from_the_previous_one(
    tmp_path, idx_dir, caplog
):
    train.train_and_evaluate(idx_config(idx_dir), tmp_path)  # checkpoints 6 and 12
    intact = final_params(tmp_path)
    flip_a_bit(tmp_path / "checkpoints" / "12")

    longer = idx_config(idx_dir, **{"train.steps": 18})
    with caplog.at_level("WARNING", logger="cnn_jax"):
        train.train_and_evaluate(longer, tmp_path, allow_config_change=True)
    notices = [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING" and "corrupt" in r.getMessage()
    ]
    assert len(notices) == 1 and "checkpoints/12 is corrupt: " in notices[0]
    assert (
        "does not have the checksum it was saved with" in notices[0]
        and "resuming from step 6" in notices[0]
    )
    assert (tmp_path / "checkpoints" / "12.unrestorable").is_dir()  # kept, not deleted
    assert checkpoint.Checkpoints(tmp_path / "checkpoints").all_steps() == [6, 12, 18]
    # Steps 7 to 12 trained again give back the parameters the flipped bit had changed.
    jax.tree.map(
        np.testing.assert_array_equal, checkpoint.load(tmp_path, step=12)[1]["params"], intact
    )


def test_a_workdir_whose_checkpoints_all_fail_is_a_clear_error_that_deletes_nothing(
    tmp_path, idx_dir
):
    train.train_and_evaluate(idx_config(idx_dir, **{"train.steps": 6}), tmp_path)
    files = [
        p
        for p in (tmp_path / "checkpoints" / "6").rglob("*")
        if p.is_file() and p.stat().st_size > 0
    ]
    for path in files:
        path.write_bytes(b"garbage")
    with pytest.raises(
        CheckpointError,
        match="No checkpoint in .* can be restored .*checkpoints/6 cannot be restored",
    ):
        train.train_and_evaluate(idx_config(idx_dir), tmp_path, allow_config_change=True)
    assert all(path.read_bytes() == b"garbage" for path in files)


def test_batch_larger_than_the_training_set(tmp_path, idx_dir):
    with pytest.raises(ConfigError, match="exceeds the 256 training examples"):
        train.train_and_evaluate(idx_config(idx_dir, **{"train.batch_size": 512}), tmp_path)
