"""experiments.benchmark times the real train step and reports what it measured."""

import os

import jax
import pytest

from cnn_jax import models
from cnn_jax.models import summary
from experiments import benchmark, torch_reference


def test_measure_reports_speed_compile_time_and_model_flops():
    result = benchmark.measure("cifar_resnet20", batch_size=8, steps=2, dtype="float32")

    assert result["images_per_sec"] > 0 and result["step_ms"] > 0 and result["compile_s"] > 0
    assert result["params"] == 269_722 and result["backend"] == "cpu"
    multiply_adds = summary.totals(
        summary.layer_table(models.create("cifar_resnet20"), (32, 32, 3))
    )[1]
    assert result["flops_per_step"] == pytest.approx(6 * multiply_adds * 8)
    assert result["achieved_flops_per_sec"] == pytest.approx(
        result["flops_per_step"] * 1000 / result["step_ms"]
    )


def test_speed_converts_seconds_to_images_steps_and_flops():
    info = {"batch_size": 128, "flops_per_step": 1e9}
    assert benchmark.speed(info, steps=10, seconds=2.0) == {
        "images_per_sec": 640.0, "step_ms": 200.0, "achieved_flops_per_sec": 5e9,
    }


def test_compare_with_torch_alternates_rounds_and_reports_medians(monkeypatch):
    """The two steps take turns, so a machine that slows down mid-run slows both alike."""
    calls = []

    def fake_prepare(model_name, batch_size, dtype, scan=None):
        ours = iter([1.0, 2.0, 0.5])  # seconds per round of 4 steps of 8 images

        def run(steps):
            calls.append("ours")
            return next(ours)

        return run, {"model": model_name, "batch_size": batch_size, "flops_per_step": 1.0}

    def fake_step_timer(model_name, batch_size, channels_last):
        assert not channels_last  # PyTorch's default layout unless asked
        theirs = iter([2.0, 4.0, 1.0])

        def run(steps):
            calls.append("torch")
            return next(theirs)

        return run, {"torch": "fake", "memory_format": "contiguous"}

    monkeypatch.setattr(benchmark, "prepare", fake_prepare)
    monkeypatch.setattr(benchmark.torch_reference, "step_timer_in_subprocess", fake_step_timer)
    result = benchmark.compare_with_torch("cifar_resnet20", 8, steps=4, dtype="float32", rounds=3)

    assert calls == ["ours", "torch"] * 3
    assert result["rounds_images_per_sec"] == [32.0, 16.0, 64.0]
    assert result["images_per_sec"] == 32.0 and result["torch_images_per_sec"] == 16.0
    assert result["ratio"] == 2.0 and result["torch_version"] == "fake"
    assert result["torch_memory_format"] == "contiguous"


def counting_timer(model_name, batch_size, **options):
    """A stand-in for the PyTorch twin: 'takes' one second per step, says where it runs."""
    return (lambda steps: float(steps)), {"model": model_name, "pid": os.getpid(), **options}


def failing_timer(model_name, batch_size):
    raise ValueError(f"No PyTorch twin for {model_name!r}.")


def dying_timer(model_name, batch_size):
    os._exit(1)  # as if killed: no answer at all


def test_the_twin_runs_in_a_process_of_its_own():
    """Its OpenMP threads and ours (oneDNN's) never share a process."""
    run, info = torch_reference.step_timer_in_subprocess(
        "cifar_resnet20", 8, timer=counting_timer, channels_last=True
    )
    assert (
        info["pid"] != os.getpid() and info["model"] == "cifar_resnet20" and info["channels_last"]
    )
    assert [run(3), run(5)] == [3.0, 5.0]


def test_a_failure_in_the_twins_process_is_raised_here():
    with pytest.raises(RuntimeError, match="ValueError: No PyTorch twin for 'resnet50'"):
        torch_reference.step_timer_in_subprocess("resnet50", 8, timer=failing_timer)


def test_a_twin_whose_process_dies_is_reported_not_waited_for():
    with pytest.raises(RuntimeError, match="ended without an answer"):
        torch_reference.step_timer_in_subprocess("cifar_resnet20", 8, timer=dying_timer)


def test_inference_times_the_evaluation_forward_pass_at_a_width():
    result = benchmark.measure(
        "cifar_resnet20", batch_size=8, steps=2, dtype="float32", inference=True, width=4
    )

    assert result["inference"] and result["images_per_sec"] > 0 and result["compile_s"] > 0
    narrow = models.create("cifar_resnet20", width=4)
    assert result["params"] == sum(x.size for x in jax.tree.leaves(
        narrow.init(jax.random.key(0), jax.numpy.zeros((1, 32, 32, 3)))["params"]))
    multiply_adds = summary.totals(summary.layer_table(narrow, (32, 32, 3)))[1]
    assert result["flops_per_step"] == pytest.approx(2 * multiply_adds * 8)  # forward only
