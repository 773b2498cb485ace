"""The lesion study: blocks deleted at test time through the models' `keep` masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import models
from cnn_jax.analysis import lesion, trained
from cnn_jax.models import cifar_resnet
from cnn_jax.training import evaluation, train
from tests.test_train import idx_config


def random_net(name, **overrides):
    """An untrained net with random BN statistics, so that every layer matters."""
    model = models.create(name, num_classes=10, width=4, **overrides)
    x = jax.random.normal(jax.random.key(1), (3, 32, 32, 3))
    variables = model.init(jax.random.key(0), x, train=False)
    stats = jax.tree.map(
        lambda s: s + 0.1 * jax.random.uniform(jax.random.key(2), s.shape), variables["batch_stats"]
    )
    return model, {**variables, "batch_stats": stats}, x


@pytest.mark.parametrize("block", ["stage1_block2", "stage2_block1", "stage3_block3"])
def test_deleting_a_residual_block_is_its_branch_times_zero(block):
    model, variables, x = random_net("cifar_resnet20")
    index = [f"stage{s}_block{i}" for s in (1, 2, 3) for i in (1, 2, 3)].index(block)
    keep = jnp.ones(9).at[index].set(0.0)
    # The branch ends in BN: a zero scale and offset make F(x) = 0.
    silenced = jax.tree.map(lambda v: v, variables)
    last_bn = silenced["params"][block]["BatchNorm_1"]
    silenced["params"][block]["BatchNorm_1"] = jax.tree.map(jnp.zeros_like, last_bn)
    np.testing.assert_array_equal(model.apply(variables, x, keep=keep), model.apply(silenced, x))
    assert not np.allclose(model.apply(variables, x, keep=keep), model.apply(variables, x))


def test_deleting_a_plain_block_makes_it_the_identity():
    model, variables, x = random_net("cifar_plain20")
    feature = lambda keep: model.apply(
        variables, x, keep=keep, capture_intermediates=True, mutable=["intermediates"]
    )[1]["intermediates"]
    kept = feature(jnp.ones(9))
    deleted = feature(jnp.ones(9).at[4].set(0.0))  # stage2_block2
    np.testing.assert_array_equal(
        deleted["stage2_block2"]["__call__"][0], kept["stage2_block1"]["__call__"][0]
    )
    # A block that halves the map size is left as it is (it cannot be deleted).
    halved = feature(jnp.ones(9).at[3].set(0.0))
    np.testing.assert_array_equal(
        halved["stage2_block1"]["__call__"][0], kept["stage2_block1"]["__call__"][0]
    )


def test_keep_means_the_same_in_scanned_and_unrolled_nets():
    model, variables, x = random_net("cifar_resnet20")
    scanned = models.create("cifar_resnet20", num_classes=10, width=4, scan=True)
    keep = jnp.array([1, 0, 1, 1, 1, 0, 0, 1, 1], jnp.float32)
    np.testing.assert_allclose(
        scanned.apply(cifar_resnet.scan_variables(variables), x, keep=keep),
        model.apply(variables, x, keep=keep),
        rtol=1e-5,
        atol=1e-5,
    )


def test_masks_delete_only_deletable_blocks():
    deletable = np.array([True, True, False, True])
    np.testing.assert_array_equal(
        lesion.single_masks(deletable), [[0, 1, 1, 1], [1, 0, 1, 1], [1, 1, 1, 0]]
    )
    masks = lesion.random_masks(deletable, 2, 5, np.random.default_rng(0))
    assert (masks.sum(1) == 2).all() and (masks[:, 2] == 1).all()


@pytest.mark.parametrize(
    "name", [pytest.param("cifar_resnet20", marks=pytest.mark.slow), "cifar_plain20"]
)
def test_no_lesion_is_the_evaluated_test_error_and_single_lesions_are_reported(
    tmp_path, idx_dir, name
):
    train.train_and_evaluate(idx_config(idx_dir, name), tmp_path)
    net = trained.restore(tmp_path)
    record = lesion.study(net, draws=2, max_deleted=3, swaps=True, chunk=4)
    _, evaluated = evaluation.evaluate_workdir(tmp_path)
    assert record["baseline_error"] == evaluated["test"]["error"]
    np.testing.assert_allclose(record["baseline_loss"], evaluated["test"]["loss"], rtol=1e-6)
    assert [b["block"] for b in record["blocks"]][:2] == ["stage1_block1", "stage1_block2"]
    not_deletable = [b["block"] for b in record["blocks"] if b["error"] is None]
    assert not_deletable == ([] if name == "cifar_resnet20" else ["stage2_block1", "stage3_block1"])
    assert [row["deleted"] for row in record["k_curve"]] == [1, 2, 3]
    assert all(len(row["errors"]) == 2 for row in record["k_curve"])
    # One lesion at a time skips the deleted blocks; vmapped, it computes and masks them.
    vmapped = lesion.study(net, draws=2, max_deleted=3, chunk=4, parallel=3)
    assert [b["error"] for b in vmapped["blocks"]] == [b["error"] for b in record["blocks"]]
    assert vmapped["k_curve"] == record["k_curve"]
    # Blocks of one shape: not the first of stages 2 and 3, which halves the map size.
    assert [s["blocks"] for s in record["swaps"]] == [
        ["stage1_block1", "stage1_block2"],
        ["stage1_block2", "stage1_block3"],
        ["stage2_block2", "stage2_block3"],
        ["stage3_block2", "stage3_block3"],
    ]
