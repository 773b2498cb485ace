"""The LeNet-5 recipe (LeCun et al. 1998, section III.B): 20 online passes and the paper's
decreasing step sizes, scaled for plain SGD."""

import jax.numpy as jnp
import numpy as np

from cnn_jax.training import optim, train
from experiments import configs


def test_twenty_passes_at_the_papers_step_sizes_times_ten():
    config = configs.get_config("mnist_lenet5")
    assert config.model.name == "lenet5" and config.train.batch_size == 1
    assert config.train.steps == 20 * 60_000
    assert (config.optimizer.momentum, config.optimizer.weight_decay) == (0.0, 0.0)
    assert (config.augment.crop_padding, config.augment.flip) == (0, False)
    lr = lambda step: float(optim.learning_rate(config, jnp.asarray(step), jnp.asarray(False)))
    first_step_of_pass = {1: 0, 3: 2, 6: 5, 9: 8, 13: 12, 20: 19}
    paper = {1: 0.0005, 3: 0.0002, 6: 0.0001, 9: 0.00005, 13: 0.00001, 20: 0.00001}
    for pass_, done in first_step_of_pass.items():
        np.testing.assert_allclose(lr(done * 60_000), 10 * paper[pass_], rtol=1e-6)
        if done:
            np.testing.assert_allclose(lr(done * 60_000 - 1), lr((done - 1) * 60_000), rtol=1e-6)
    doc = (configs.DIRECTORY / "mnist_lenet5.py").read_text()
    assert "python -m experiments.train --config=mnist_lenet5" in doc


def test_smoke_config_trains_lenet5(tmp_path, idx_dir):
    overrides = {"dataset.source": "files", "dataset.data_dir": str(idx_dir)}
    config = configs.get_config("mnist_lenet5:smoke", overrides)
    summary = train.train_and_evaluate(config, tmp_path)
    assert summary["step"] == 240 and summary["params"] == 60_850
    assert 0.0 <= summary["test_error"] <= 100.0 and np.isfinite(summary["train_loss"])
