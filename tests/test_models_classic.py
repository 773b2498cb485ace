"""LeNet-5, AlexNet and VGG A-E checked against the papers' tables and torchvision's counts."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from cnn_jax import models
from cnn_jax.data import imagenet_ops
from cnn_jax.errors import ConfigError
from cnn_jax.models import alexnet, layers, lenet, vgg
from experiments import configs

MODELS = {**lenet.MODELS, **alexnet.MODELS, **vgg.MODELS}

# Hand counts are in each model file's docstring. torchvision's published counts for alexnet
# and vgg*; A-LRN has A's parameters (LRN has none); C is D less 8 * (256^2 + 2 * 512^2).
PARAMS = {
    "lenet5": 60_850,  # LeCun 1998's 60,000 (C1-F6, Table I's C3) + a linear 84 -> 10 head
    "alexnet": 60_965_224,
    "alexnet_owt": 61_100_840,
    "vgg_a": 132_863_336,
    "vgg11": 132_863_336,
    "vgg_a_lrn": 132_863_336,
    "vgg_b": 133_047_848,
    "vgg13": 133_047_848,
    "vgg_c": 133_638_952,
    "vgg_d": 138_357_544,
    "vgg16": 138_357_544,
    "vgg_e": 143_667_240,
    "vgg19": 143_667_240,
    "vgg_a_bn": 132_868_840,
    "vgg11_bn": 132_868_840,
    "vgg_a_lrn_bn": 132_868_840,
    "vgg_b_bn": 133_053_736,
    "vgg13_bn": 133_053_736,
    "vgg_c_bn": 133_647_400,
    "vgg_d_bn": 138_365_992,
    "vgg16_bn": 138_365_992,
    "vgg_e_bn": 143_678_248,
    "vgg19_bn": 143_678_248,
}
NATIVE_INPUT = {"lenet5": (32, 32, 1), "alexnet": (227, 227, 3)}  # Others: 224x224x3.


def native_input(name: str) -> tuple[int, int, int]:
    return NATIVE_INPUT.get(name, (224, 224, 3))


def abstract_run(model, input_shape, batch=2):
    """Variable and logit shapes of init + apply, traced with jax.eval_shape: nothing computed."""
    x = jax.ShapeDtypeStruct((batch, *input_shape), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
    return variables, logits


def param_count(variables) -> int:
    return sum(x.size for x in jax.tree.leaves(variables["params"]))


def test_every_name_is_pinned():
    assert set(MODELS) == set(PARAMS)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count_and_output_at_native_size(name):
    variables, logits = abstract_run(MODELS[name](), native_input(name))
    assert param_count(variables) == PARAMS[name]
    num_classes = 10 if name == "lenet5" else 1000
    assert logits.shape == (2, num_classes) and logits.dtype == jnp.float32
    assert ("batch_stats" in variables) == name.endswith("_bn")


def test_lenet5_simplified_variants():
    """Full C3 (16 * 151 = 2,416 instead of 1,516) and parameter-free 2x2 average pools (-44)."""

    def count(**options) -> int:
        return param_count(abstract_run(lenet.LeNet5(**options), (32, 32, 1))[0])

    assert count(c3_table=False, trainable_subsampling=False) == 61_706
    assert count(c3_table=False) == 61_706 + 12 + 32
    assert count(trainable_subsampling=False) == 60_850 - 12 - 32


def test_lenet5_c3_follows_table_1():
    c3 = small_run("lenet5")[0]["params"]["c3"]
    assert c3["kernel"].shape == (5, 5, 60) and c3["bias"].shape == (16,)
    # C3 map 0 sees S2 maps 0-2 only: changing S2 map 3 moves the maps that list 3, no others.
    s2 = jax.random.normal(key(2), (1, 14, 14, 6))
    conv = lenet.PartialConv(lenet.C3_TABLE)
    apply = jax.jit(lambda s2: conv.apply({"params": c3}, s2))
    change = np.abs(np.asarray(apply(s2.at[..., 3].add(1.0)) - apply(s2))).max(axis=(0, 1, 2))
    np.testing.assert_array_equal(change > 0, [3 in maps for maps in lenet.C3_TABLE])


def lrn_reference(a, n, k, alpha, beta):
    """The paper's formula, channel by channel, with the window clipped at the edges."""
    b = np.empty_like(a)
    channels = a.shape[-1]
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        b[..., i] = a[..., i] / (k + alpha * (a[..., lo : hi + 1] ** 2).sum(-1)) ** beta
    return b


@pytest.mark.parametrize(
    "n, k, alpha, beta", [(5, 2.0, 1e-4, 0.75), (3, 1.0, 0.5, 0.75), (5, 0.5, 2.0, 1.0)]
)
def test_local_response_norm_is_the_paper_formula(n, k, alpha, beta):
    a = np.random.default_rng(0).normal(size=(2, 3, 4, 7)).astype(np.float32) * 3
    lrn = layers.LocalResponseNorm(n=n, k=k, alpha=alpha, beta=beta)
    b = lrn.apply({}, jnp.asarray(a))
    np.testing.assert_allclose(np.asarray(b), lrn_reference(a, n, k, alpha, beta), rtol=1e-5)
    assert b.dtype == jnp.float32
    assert lrn.apply({}, jnp.asarray(a, jnp.bfloat16)).dtype == jnp.bfloat16


@pytest.mark.parametrize("size, out", [(13, 6), (6, 6), (5, 6), (1, 7), (9, 4)])
def test_adaptive_avg_pool_matches_pytorch_windows(size, out):
    x = np.random.default_rng(0).normal(size=(2, size, size + 1, 3)).astype(np.float32)
    expected = np.empty((2, out, out, 3), np.float32)
    for i in range(out):
        r0, r1 = (i * size) // out, -(-(i + 1) * size // out)
        for j in range(out):
            c0, c1 = (j * (size + 1)) // out, -(-(j + 1) * (size + 1) // out)
            expected[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
    y = layers.adaptive_avg_pool(jnp.asarray(x), (out, out))
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-6)


def test_alexnet_towers():
    variables, _ = abstract_run(alexnet.AlexNet(), (227, 227, 3), batch=1)
    params = variables["params"]
    assert params["conv2"]["kernel"].shape == (5, 5, 48, 256)  # Each tower sees its 48 maps.
    assert params["conv3"]["kernel"].shape == (3, 3, 256, 384)  # conv3 crosses the towers.
    assert params["conv5"]["kernel"].shape == (3, 3, 192, 256)
    assert params["fc6"]["kernel"].shape == (6 * 6 * 256, 4096)


def test_alexnet_owt_pools_any_input_to_6x6():
    variables, logits = abstract_run(alexnet.AlexNetOWT(), (256, 192, 3))
    assert param_count(variables) == PARAMS["alexnet_owt"] and logits.shape == (2, 1000)


def test_vgg_configurations_follow_table_1():
    for config, weight_layers in {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}.items():
        params = abstract_run(vgg.VGG(config), (224, 224, 3), batch=1)[0]["params"]
        assert len(params) == weight_layers
    params = abstract_run(vgg.MODELS["vgg_c"](), (224, 224, 3), batch=1)[0]["params"]
    assert params["conv3_3"]["kernel"].shape == (1, 1, 256, 256)
    assert params["conv5_3"]["kernel"].shape == (1, 1, 512, 512)
    assert params["fc6"]["kernel"].shape == (7 * 7 * 512, 4096)


def test_unknown_vgg_config():
    with pytest.raises(ConfigError, match="VGG config"):
        vgg.VGG("F")


# One per family at a reduced size: (model, input shape).
SMALL = {
    "lenet5": (lenet.LeNet5(), (32, 32, 1)),
    "alexnet": (alexnet.AlexNet(num_classes=10, fc_features=64), (67, 67, 3)),
    "alexnet_owt": (alexnet.AlexNetOWT(num_classes=10, fc_features=64), (67, 67, 3)),
    "vgg_a_lrn_bn": (
        vgg.VGG("A-LRN", num_classes=10, batch_norm=True, width=8, fc_features=32),
        (32, 32, 3),
    ),
}


def key(seed: int) -> jax.Array:
    """A PRNG key whose programs compile several times faster on CPU than threefry's."""
    return jax.random.key(seed, impl="unsafe_rbg")


@functools.cache
def small_run(name):
    """Init, a training-mode cross-entropy and its gradients (as the generic train step
    computes them), logits in both modes under two dropout keys: one program per model."""
    model, shape = SMALL[name]

    @jax.jit
    def run(x, labels):
        variables = model.init(key(0), x)
        params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}

        def apply(params, train, rng):
            return model.apply(
                {"params": params, **state},
                x,
                train=train,
                rngs={"dropout": rng},
                mutable=list(state),
            )

        keys = jax.random.split(key(3))

        def loss_fn(params):  # Training mode, averaged over two dropout keys.
            logits, updates = jax.vmap(lambda k: apply(params, True, k))(keys)
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels[None])
            return losses.mean(), (logits, jax.tree.map(lambda u: u[0], updates))

        (loss, (train_logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        eval_logits = jax.vmap(lambda k: apply(params, False, k)[0])(keys)
        return variables, loss, updates, grads, eval_logits, train_logits

    x = jax.random.normal(key(1), (2, *shape))
    return jax.device_get(run(x, jnp.array([1, 7])))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_and_backward_at_reduced_size(name):
    variables, loss, updates, grads, eval_logits, _ = small_run(name)
    assert np.isfinite(loss) and eval_logits.shape == (2, 2, SMALL[name][0].num_classes)
    leaves = jax.tree.leaves(grads)
    assert all(np.isfinite(g).all() for g in leaves)
    assert all(np.abs(g).max() > 0 for g in leaves)  # Every parameter gets a gradient.
    assert set(updates) == ({"batch_stats"} if "batch_stats" in variables else set())


@pytest.mark.parametrize("name", ["alexnet", "alexnet_owt", "vgg_a_lrn_bn"])
def test_dropout_and_batch_norm_only_act_in_training(name):
    variables, _, updates, _, eval_logits, train_logits = small_run(name)  # [dropout key, ...]
    np.testing.assert_array_equal(eval_logits[0], eval_logits[1])  # Inference: no dropout.
    assert not np.allclose(train_logits[0], train_logits[1])  # Training draws dropout masks.
    assert not np.allclose(train_logits[0], eval_logits[0])
    if "batch_stats" in variables:  # Training updates the running statistics.
        before, after = jax.tree.leaves(variables["batch_stats"]), jax.tree.leaves(updates)
        assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_alexnet_paper_initialization():
    variables = small_run("alexnet")[0]
    params = variables["params"]
    np.testing.assert_allclose(params["conv3"]["kernel"].std(), 0.01, rtol=0.02)
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        expected = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        np.testing.assert_array_equal(params[name]["bias"], expected)


def smooth_images(count: int, size: int) -> np.ndarray:
    """[0, 1] RGB images of 8x8 random colour blocks, as the pipeline hands them to normalize."""
    blocks = np.random.default_rng(0).integers(0, 256, (count, 8, 8, 3)) / 255.0
    cell = -(-size // 8)
    return np.repeat(np.repeat(blocks, cell, 1), cell, 2)[:, :size, :size].astype(np.float32)


def test_alexnet_recipe_feeds_the_input_scale_its_initialization_was_set_for():
    """Section 5's N(0, 0.01) weights and biases of 1 suit section 2's inputs, 0-255 pixels
    minus the mean. At initialization the logits' input-dependent spread (their standard
    deviation across images) is then about 40x that of standardized inputs, which are about 57x
    smaller and leave the logits nearly constant, set by the biases."""
    normalize = configs.get_config("imagenet_alexnet").augment.normalize
    assert normalize == "subtract_mean"
    model = alexnet.AlexNet()
    images = smooth_images(6, 227)
    variables = jax.jit(model.init)(key(0), jnp.zeros((1, 227, 227, 3)))
    logits = jax.jit(lambda x: model.apply(variables, x))
    spread = {
        method: np.asarray(logits(imagenet_ops.normalize(images, method))).std(axis=0).mean()
        for method in ("standardize", normalize)
    }
    assert spread[normalize] > 30 * spread["standardize"]  # measured: 0.0094 against 0.00022, 43x


@pytest.mark.parametrize(
    "recipe, initialization", [("imagenet_vgg_a", "gaussian"), ("imagenet_vgg16", "glorot")]
)
def test_vgg_recipes_initialize_as_section_3_1(recipe, initialization):
    """Net A from N(0, 0.01^2) weights and zero biases; the deeper nets from Glorot's uniform
    initialization, whose bounds follow each layer's fan-in and fan-out."""
    config = configs.get_config(recipe).model
    assert config.initialization == initialization
    small = ml_collections.ConfigDict({**config, "width": 16, "fc_features": 64})
    model = models.from_config(small, num_classes=10)
    params = model.init(key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    for name, layer in params.items():
        kernel = layer["kernel"]
        receptive_field = np.prod(kernel.shape[:-2])  # 1 for a dense layer
        fan_in, fan_out = receptive_field * kernel.shape[-2], receptive_field * kernel.shape[-1]
        expected = 0.01 if initialization == "gaussian" else np.sqrt(2 / (fan_in + fan_out))
        np.testing.assert_allclose(kernel.std(), expected, rtol=0.1, err_msg=name)
        np.testing.assert_array_equal(layer["bias"], 0.0)


def test_unknown_vgg_initialization():
    with pytest.raises(ConfigError, match="initialization must be one of glorot, gaussian"):
        vgg.VGG("A", initialization="he")


def test_lenet5_initialization_is_uniform_within_2_4_over_fan_in():
    params = small_run("lenet5")[0]["params"]
    c5 = params["c5"]["kernel"]  # fan-in 5 * 5 * 16
    bound = 2.4 / 400
    assert bound >= np.abs(c5).max() > 0.9 * bound
    packed = params["c3"]["kernel"]  # The last C3 map sees all six S2 maps: fan-in 150.
    assert np.abs(packed[..., -6:]).max() <= 2.4 / 150
    assert np.abs(packed[..., :3]).max() > 2.4 / 150  # Three maps: 2.4 / 75.


def test_bfloat16_keeps_float32_parameters_and_logits():
    for model, shape in [
        (lenet.LeNet5(dtype=jnp.bfloat16), (32, 32, 1)),
        (vgg.VGG("A-LRN", num_classes=10, width=8, fc_features=32, dtype=jnp.bfloat16),
         (32, 32, 3)),
    ]:
        variables, logits = abstract_run(model, shape)
        assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
        assert logits.dtype == jnp.float32 and logits.shape == (2, 10)
