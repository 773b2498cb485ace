"""experiments.benchmark times the real train step and reports what it measured."""

import pytest

from cnn_jax import models
from cnn_jax.models import summary
from experiments import benchmark


def test_measure_reports_speed_compile_time_and_model_flops():
    result = benchmark.measure("cifar_resnet20", batch_size=8, steps=2, dtype="float32")

    assert result["images_per_sec"] > 0 and result["step_ms"] > 0 and result["compile_s"] > 0
    assert result["params"] == 269_722 and result["backend"] == "cpu"
    multiply_adds = summary.totals(summary.layer_table(models.create("cifar_resnet20"), (32, 32, 3)))[1]
    assert result["flops_per_step"] == pytest.approx(6 * multiply_adds * 8)
    assert result["achieved_flops_per_sec"] == pytest.approx(result["flops_per_step"] * 1000 / result["step_ms"])
