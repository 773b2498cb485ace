"""The ImageNet nets of He et al. 2015 (Table 1), checked against torchvision's counts."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax.errors import ConfigError
from cnn_jax.models import layers, resnet

# torchvision's published counts (shortcut option B: projections where the shape changes).
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}


def projection(cin: int, cout: int) -> int:
    """Parameters of a 1x1 projection + BN (gamma, beta)."""
    return cin * cout + 2 * cout


# Option B projects in the first block of each stage whose shape changes; option A does not.
RESNET34_B_PROJECTIONS = projection(64, 128) + projection(128, 256) + projection(256, 512)
RESNET50_B_PROJECTIONS = (
    projection(64, 256) + projection(256, 512) + projection(512, 1024) + projection(1024, 2048)
)


@functools.cache
def abstract_init(name: str, size: int = 224, **overrides):
    """(logits, variables) as shapes only: nothing is computed."""
    model = resnet.MODELS[name](**overrides)
    x = jnp.zeros((1, size, size, 3))
    return jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x))


def param_count(name: str, **overrides) -> int:
    _, variables = abstract_init(name, **overrides)
    return sum(x.size for x in jax.tree.leaves(variables["params"]))


def test_models_are_the_paper_nets():
    assert set(resnet.MODELS) == {*TORCHVISION_PARAMS, "plain18", "plain34"}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_option_b_parameter_counts_equal_torchvision(name):
    assert param_count(name) == TORCHVISION_PARAMS[name]


def test_option_a_has_no_projections():
    assert param_count("resnet34", shortcut="A") == (
        TORCHVISION_PARAMS["resnet34"] - RESNET34_B_PROJECTIONS
    )
    # conv2_x of a bottleneck net grows 64 -> 256 at stride 1: zero-padded too under option A.
    assert param_count("resnet50", shortcut="A") == (
        TORCHVISION_PARAMS["resnet50"] - RESNET50_B_PROJECTIONS
    )


def test_option_c_projects_every_shortcut():
    # resnet34 blocks per stage (3, 4, 6, 3); all but the first of stages 2-4 keep their width.
    identity_blocks = {64: 3, 128: 3, 256: 5, 512: 2}
    extra = sum(n * projection(c, c) for c, n in identity_blocks.items())
    assert param_count("resnet34", shortcut="C") == TORCHVISION_PARAMS["resnet34"] + extra


@pytest.mark.parametrize("depth", [18, 34])
def test_plain_net_has_the_parameters_of_its_option_a_resnet(depth):
    # Option A shortcuts are parameter-free, so a plain net and its ResNet have equal counts.
    plain = param_count(f"plain{depth}")
    assert plain == param_count(f"resnet{depth}", shortcut="A")
    if depth == 34:
        assert plain == TORCHVISION_PARAMS["resnet34"] - RESNET34_B_PROJECTIONS


@pytest.mark.parametrize("depth", [18, 34])
def test_plain_net_depth_counts_weighted_layers(depth):
    _, variables = abstract_init(f"plain{depth}")
    kernels = [x for x in jax.tree.leaves(variables["params"]) if x.ndim in (2, 4)]
    assert len(kernels) == depth  # convolutions + the fc layer


@pytest.mark.parametrize("name", [*sorted(TORCHVISION_PARAMS), "plain18", "plain34"])
def test_logits_at_224(name):
    logits, variables = abstract_init(name)
    assert logits.shape == (1, 1000) and logits.dtype == jnp.float32
    assert set(variables) == {"params", "batch_stats"}


def stage_shapes(name: str, **overrides) -> dict[str, tuple[int, ...]]:
    """Output shape of every module at 224x224, keyed by its path."""
    model = resnet.MODELS[name](**overrides)
    x = jnp.zeros((1, 224, 224, 3))

    def run():
        variables = model.init(jax.random.key(0), x)
        return model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])

    _, state = jax.eval_shape(run)
    flat = jax.tree_util.tree_flatten_with_path(state["intermediates"])[0]
    return {"/".join(k.key for k in path[:-2]): leaf.shape for path, leaf in flat}


@pytest.mark.parametrize("name, expansion", [("resnet18", 1), ("resnet50", 4)])
def test_table_1_output_sizes(name, expansion):
    shapes = stage_shapes(name)
    assert shapes["stem_conv"] == (1, 112, 112, 64)  # conv1: 7x7/2, pad 3
    last = {"resnet18": (2, 2, 2, 2), "resnet50": (3, 4, 6, 3)}[name]
    for stage, (size, width, n) in enumerate(zip((56, 28, 14, 7), (64, 128, 256, 512), last)):
        assert shapes[f"stage{stage + 1}_block{n}"] == (1, size, size, width * expansion)


def test_bottleneck_stride_placement():
    paper = stage_shapes("resnet50")
    v15 = stage_shapes("resnet50", stride_on_1x1=False)
    # conv3_x's first block: 56x56 in, 28x28 out. The paper strides the first 1x1, v1.5 the 3x3.
    assert paper["stage2_block1/Conv_0"] == (1, 28, 28, 128)
    assert paper["stage2_block1/Conv_1"] == (1, 28, 28, 128)
    assert v15["stage2_block1/Conv_0"] == (1, 56, 56, 128)
    assert v15["stage2_block1/Conv_1"] == (1, 28, 28, 128)
    assert param_count("resnet50", stride_on_1x1=False) == TORCHVISION_PARAMS["resnet50"]


def test_convolutions_pad_symmetrically_like_torchvision():
    # A stride-2 3x3 convolution pads 1 on every side ('SAME' would pad only right/bottom).
    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 2))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 2, 3))
    conv = layers.conv()(3, (3, 3), strides=2)
    y = conv.apply({"params": {"kernel": kernel}}, x)
    expected = jax.lax.conv_general_dilated(
        x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    assert y.shape == (1, 4, 4, 3)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params_and_logits():
    logits, variables = abstract_init("resnet18", dtype=jnp.bfloat16)
    assert logits.dtype == jnp.float32
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))


def random_variables(model, x) -> dict:
    """He-normal kernels, fresh BN: what `model.init` gives, drawn with numpy (no XLA compile)."""
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            std = np.sqrt(2.0 / np.prod(leaf.shape[:-1]))
            return jnp.asarray(rng.normal(0.0, std, leaf.shape), jnp.float32)
        return jnp.ones(leaf.shape) if name in ("scale", "var") else jnp.zeros(leaf.shape)

    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_forward_backward_and_batch_stats_update_only_in_training(name):
    # 64x64 instead of 224 (the net is fully convolutional up to the global average pool).
    model = resnet.MODELS[name](num_classes=10)
    x = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
    labels = jnp.array([1, 7])
    variables = random_variables(model, x)

    def loss_fn(params):
        logits, updates = model.apply(
            {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates

    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    (loss, updates), grads = grad_fn(variables["params"])
    assert np.isfinite(float(loss))
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads["head"]))
    assert float(jnp.abs(grads["stem_conv"]["kernel"]).max()) > 0
    before = jax.tree.leaves(variables["batch_stats"])
    assert all(not np.allclose(a, b) for a, b in zip(before, jax.tree.leaves(updates)))
    if name == "resnet18":  # Inference reads the statistics and leaves them alone.
        logits, state = jax.jit(
            lambda v: model.apply(v, x, train=False, mutable=["batch_stats"])
        )(variables)
        assert logits.shape == (2, 10) and logits.dtype == jnp.float32
        assert all(np.array_equal(a, b) for a, b in zip(before, jax.tree.leaves(state)))


def test_option_a_bottleneck_shortcut_zero_pads_at_stride_1():
    shortcut = resnet.Shortcut(filters=256, strides=1, option="A", conv=None, norm=None)
    x = jax.random.normal(jax.random.key(0), (1, 4, 4, 64))
    y = shortcut.apply({}, x)
    assert y.shape == (1, 4, 4, 256)
    np.testing.assert_array_equal(y[..., :64], x)
    np.testing.assert_array_equal(y[..., 64:], 0.0)


@pytest.mark.parametrize("overrides", [{"depth": 20}, {"depth": 200}])
def test_depth_outside_table_1_is_a_clear_error(overrides):
    with pytest.raises(ConfigError, match="Table 1"):
        resnet.ResNet(**overrides)


def test_bad_shortcut_option():
    with pytest.raises(ConfigError, match="shortcut"):
        resnet.MODELS["resnet18"](shortcut="D")
