"""The CIFAR nets of He et al. 2015, section 4.2, checked against the paper's Table 6."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import cpu, models
from cnn_jax.errors import ConfigError
from cnn_jax.models import cifar_resnet, layers, residual

# Table 6, recomputed from the layer specs with option A shortcuts (BN gamma/beta counted).
RESNET_PARAMS = {
    20: 269_722,
    32: 464_154,
    44: 658_586,
    56: 853_018,
    110: 1_727_962,
    1202: 19_421_274,
}
OPTION_B_EXTRA = 2_752  # two 1x1 projections + BN, where the width grows (16->32, 32->64)


def param_count(model, channels=3) -> int:
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, channels)))
    )
    return sum(x.size for x in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("depth", sorted(RESNET_PARAMS))
def test_resnet_parameter_counts_match_table_6(depth):
    assert param_count(models.create(f"cifar_resnet{depth}")) == RESNET_PARAMS[depth]


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_plain_net_has_exactly_the_parameters_of_its_resnet(depth):
    assert param_count(models.create(f"cifar_plain{depth}")) == RESNET_PARAMS[depth]


def test_option_b_adds_two_projections():
    assert (
        param_count(models.create("cifar_resnet20", shortcut="B"))
        == RESNET_PARAMS[20] + OPTION_B_EXTRA
    )
    assert (
        param_count(models.create("cifar_resnet56", shortcut="B"))
        == RESNET_PARAMS[56] + OPTION_B_EXTRA
    )


def test_option_c_projects_every_shortcut():
    # 9 blocks at widths 16/32/64 (3 each) each add a 1x1 conv and a BN.
    extra = sum(3 * (cin * cout + 2 * cout) for cin, cout in [(16, 16), (32, 32), (64, 64)])
    extra += (16 * 32 - 32 * 32) + (32 * 64 - 64 * 64)  # the first block of stages 2, 3 grows
    assert param_count(models.create("cifar_resnet20", shortcut="C")) == RESNET_PARAMS[20] + extra


def test_names_list_the_paper_nets():
    names = models.names()
    for depth in RESNET_PARAMS:
        assert f"cifar_resnet{depth}" in names
    for depth in (20, 32, 44, 56, 110):
        assert f"cifar_plain{depth}" in names


def test_output_is_logits_per_class_and_batch_stats_update_in_training():
    model = models.create("cifar_resnet20", num_classes=100, width=8)
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    variables = model.init(jax.random.key(0), x, train=False)
    assert set(variables) == {"params", "batch_stats"}
    logits = model.apply(variables, x, train=False)
    assert logits.shape == (4, 100) and logits.dtype == jnp.float32
    _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    before = jax.tree.leaves(variables["batch_stats"])
    after = jax.tree.leaves(updates["batch_stats"])
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_width_scales_every_stage():
    variables = models.create("cifar_plain20", width=8).init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 3))
    )
    params = variables["params"]
    assert params["stem_conv"]["kernel"].shape == (3, 3, 3, 8)
    assert params["stage2_block1"]["Conv_0"]["kernel"].shape == (3, 3, 8, 16)
    assert params["stage3_block3"]["Conv_1"]["kernel"].shape == (3, 3, 32, 32)
    assert params["head"]["kernel"].shape == (32, 10)


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
    shortcut = residual.Shortcut(filters=8, strides=2, option="A", conv=None, norm=None)
    y = shortcut.apply({}, x)
    assert y.shape == (2, 4, 4, 8)
    np.testing.assert_array_equal(y[..., :4], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(y[..., 4:], 0.0)


def test_he_normal_initialization():
    variables = models.create("cifar_resnet56").init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    kernel = variables["params"]["stage3_block9"]["Conv_1"]["kernel"]  # 3x3x64x64
    fan_in = 3 * 3 * 64
    np.testing.assert_allclose(float(kernel.mean()), 0.0, atol=1e-3)
    np.testing.assert_allclose(float(kernel.std()), np.sqrt(2.0 / fan_in), rtol=0.03)


@pytest.mark.parametrize("name", ["cifar_resnet21", "cifar_plain8x", "cifar_resnet2"])
def test_depth_that_is_not_6n_plus_2_is_a_clear_error(name):
    with pytest.raises(ConfigError, match="6n\\+2|Unknown model"):
        models.create(name)


def test_any_6n_plus_2_depth_is_accepted():
    assert param_count(models.create("cifar_resnet26")) > RESNET_PARAMS[20]


def test_unknown_model_lists_known_ones():
    with pytest.raises(ConfigError, match="known models: .*cifar_resnet20"):
        models.create("resnet_9000")


def test_bad_shortcut_option():
    with pytest.raises(ConfigError, match="shortcut"):
        models.create("cifar_resnet20", shortcut="D")


@pytest.mark.parametrize("name", ["cifar_resnet20", "cifar_plain32"])
def test_scanned_and_unrolled_nets_compute_the_same_function_and_share_weights(name):
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    unrolled = models.create(name, width=4)
    scanned = models.create(name, width=4, scan=True)
    unrolled_vars = unrolled.init(jax.random.key(0), x)
    scanned_vars = scanned.init(jax.random.key(0), x)
    assert param_count(unrolled) == param_count(scanned)
    assert (
        scanned_vars["params"]["stage1_blocks"]["block"]["Conv_0"]["kernel"].shape[0]
        == (int(name[-2:]) - 2) // 6 - 1
    )

    converted = cifar_resnet.scan_variables(unrolled_vars)
    np.testing.assert_allclose(
        scanned.apply(converted, x), unrolled.apply(unrolled_vars, x), rtol=1e-5, atol=1e-5
    )
    back = cifar_resnet.unroll_variables(scanned_vars)
    np.testing.assert_allclose(
        unrolled.apply(back, x), scanned.apply(scanned_vars, x), rtol=1e-5, atol=1e-5
    )
    jax.tree.map(
        np.testing.assert_array_equal, cifar_resnet.unroll_variables(converted), unrolled_vars
    )

    # Training mode: the same logits and the same updated BN statistics.
    logits_s, stats_s = scanned.apply(converted, x, train=True, mutable=["batch_stats"])
    logits_u, stats_u = unrolled.apply(unrolled_vars, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(logits_s, logits_u, rtol=1e-4, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 cifar_resnet.unroll_variables(stats_s), stats_u)


def test_remat_changes_memory_not_numbers():
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    plain = models.create("cifar_resnet20", width=4, scan=True)
    remat = models.create("cifar_resnet20", width=4, scan=True, remat=True)
    variables = plain.init(jax.random.key(0), x)

    def grads(model):
        loss = lambda p: model.apply(
            {**variables, "params": p}, x, train=True, mutable=["batch_stats"]
        )[0].sum()
        return jax.grad(loss)(variables["params"])

    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        grads(remat),
        grads(plain),
    )


def test_stored_relu_is_relu_with_its_gradient_and_keeps_nan():
    x = jnp.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    np.testing.assert_array_equal(cpu.stored_relu(x), jax.nn.relu(x))
    np.testing.assert_array_equal(
        jax.grad(lambda x: cpu.stored_relu(x).sum())(x), jax.grad(lambda x: jax.nn.relu(x).sum())(x)
    )
    # A diverged run stays visibly diverged.
    assert np.isnan(cpu.stored_relu(jnp.array([jnp.nan]))[0])


def test_block_outputs_are_stored_once_not_recomputed_in_every_consumer():
    """XLA may recompute max(x, 0) inside its consumers; with it, each block's F(x) + x, whose x
    is the previous block's output, and so on: one fusion would re-read the whole stage. The
    train step's fusions read a few stage-1 activations at most, not one per block (7 here)."""
    import re

    model = models.create("cifar_resnet44", width=4, **models.cpu_ops("cifar_resnet44"))
    x = jnp.zeros((8, 32, 32, 3))
    variables = model.init(jax.random.key(0), x)

    def loss(params):
        logits, _ = model.apply(
            {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
        )
        return logits.sum()

    hlo = jax.jit(jax.grad(loss)).lower(variables["params"]).compile().as_text()
    fusions = re.findall(r"\n%?fused_computation[^\n]*", hlo)
    activations_read = [len(re.findall(r"param_[\d.]+: f32\[8,32,32,4\]", f)) for f in fusions]
    assert fusions and max(activations_read) <= 4


def _centre_of_mass(y: jax.Array) -> np.ndarray:
    """Row and column of the centre of |y|'s mass, summed over the batch and channels."""
    mass = np.abs(np.asarray(y)).sum(axis=(0, 3))
    rows, cols = np.indices(mass.shape)
    return np.array([(rows * mass).sum(), (cols * mass).sum()]) / mass.sum()


@pytest.mark.parametrize("option", ["A", "B"])
def test_stride_2_branch_is_centred_where_its_shortcut_is(option):
    # One bright pixel at (10, 10): the shortcut reads it at (5, 5), and a branch of
    # convolutions with symmetric kernels must respond centred there too ('SAME' padding,
    # (0, 1), would centre the branch half a pixel up and left: F(x) + x misaligned).
    x = jnp.zeros((1, 16, 16, 4)).at[0, 10, 10, :].set(1.0)
    conv, norm = layers.conv(), layers.batch_norm(train=False)
    ones = lambda tree: jax.tree_util.tree_map_with_path(  # kernels and BN scales 1, biases 0
        lambda path, leaf: leaf * 0 if path[-1].key == "bias" else jnp.ones_like(leaf), tree
    )
    branch = residual.BasicBlock(8, 2, residual=False, shortcut=option, conv=conv, norm=norm)
    variables = branch.init(jax.random.key(0), x)
    branch_out = branch.apply({**variables, "params": ones(variables["params"])}, x)
    shortcut = residual.Shortcut(8, 2, option, conv, norm)
    variables = shortcut.init(jax.random.key(0), x)
    shortcut_out = shortcut.apply({**variables, "params": ones(variables.get("params", {}))}, x)
    np.testing.assert_allclose(_centre_of_mass(shortcut_out), [5.0, 5.0], atol=1e-6)
    np.testing.assert_allclose(_centre_of_mass(branch_out), [5.0, 5.0], atol=1e-6)
