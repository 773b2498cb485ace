"""GoogLeNet (Szegedy et al. 2014) and Inception-v4 / Inception-ResNet (Szegedy et al. 2016).

Parameter counts and shapes come from `jax.eval_shape` at the papers' input sizes (224, 299);
the real forward and backward passes run at the smallest inputs the nets accept, compiled
without XLA's expensive optimizations so that each takes seconds on a CPU.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax.errors import ConfigError
from cnn_jax.models import googlenet, inception_blocks, inception_v4, layers

MODELS = {**googlenet.MODELS, **inception_v4.MODELS}
# XLA:CPU without its expensive optimizations: compiles the big nets 3-4x faster.
FAST_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}

# timm's ports of Google's released TF-slim nets, at 1000 classes.
TIMM_PARAMS = {"inception_v4": 42_679_816, "inception_resnet_v2": 55_843_464}
# This project's nets at 1000 classes (see the module docstrings).
INCEPTION_PARAMS = {
    "inception_v4": 42_679_816,  # = timm (relative difference 0)
    "inception_resnet_v1": 22_756_328,  # no released twin; Figures 7, 10-14 as drawn
    "inception_resnet_v2": 55_843_464,  # = timm (relative difference 0)
    "inception_resnet_v2_paper": 32_433_928,  # Figure 15 as drawn: Figure 3 stem, 5/10/5 blocks
}
GOOGLENET_PARAMS = 6_998_552  # without the auxiliary classifiers (paper's Table 1: about 6.8M)
GOOGLENET_AUX_PARAMS = (3_188_840, 3_190_888)  # on 4a (512 channels) and 4d (528 channels)
GOOGLENET_BN_PARAMS = 7_005_832  # BN gamma/beta instead of conv biases: +1 per conv channel


def param_count(tree) -> int:
    return sum(x.size for x in jax.tree.leaves(tree))


def is_block(module, method_name) -> bool:
    return isinstance(module, (inception_blocks.Mixed, inception_blocks.Residual))


@functools.cache
def abstract_init(name: str, size: int, **overrides):
    """Shapes of (logits, variables, block outputs) of `init` at size x size, without computing."""
    model = MODELS[name](**overrides)
    x = jnp.zeros((1, size, size, 3))
    logits, variables = jax.eval_shape(
        lambda: model.init_with_output(jax.random.key(0), x, capture_intermediates=is_block)
    )
    outputs = {k: v["__call__"][0].shape for k, v in variables["intermediates"].items()}
    return logits, variables, outputs


def he_variables(model, x):
    """Variables with He-normal kernels, made with NumPy: no compiling of the RNG-heavy `init`
    (nor of one small XLA program per parameter shape)."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            std = np.sqrt(2.0 / np.prod(leaf.shape[:-1]))
            return rng.normal(0.0, std, leaf.shape).astype(np.float32)
        return np.full(leaf.shape, 1.0 if name in ("scale", "var") else 0.0, np.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def forward_backward(name: str, size: int, aux_weight: float = 0.0):
    """One compiled training step's gradients plus an inference pass, at size x size.

    Returns a function of a dropout key giving (grads, train logits, sown aux logits, eval
    logits, eval collections).
    """
    model = MODELS[name](num_classes=10)
    x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
    labels = jnp.array([3, 7])
    variables = he_variables(model, x)

    def loss_fn(params, key):
        logits, updates = model.apply(
            {**variables, "params": params},
            x,
            train=True,
            mutable=["batch_stats", "aux"],
            rngs={"dropout": key},
        )
        aux = jax.tree.leaves(updates.get("aux", {}))
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        loss += aux_weight * sum(
            optax.softmax_cross_entropy_with_integer_labels(a, labels).mean() for a in aux
        )
        return loss, (logits, updates.get("aux", {}))

    def step(params, key):
        grads, (logits, aux) = jax.grad(loss_fn, has_aux=True)(params, key)
        eval_logits, eval_updates = model.apply(
            {**variables, "params": params}, x, train=False, mutable=["aux"]
        )
        return grads, logits, aux, eval_logits, eval_updates

    compiled = jax.jit(step).lower(variables["params"], jax.random.key(1))
    compiled = compiled.compile(compiler_options=FAST_COMPILE)
    return functools.partial(compiled, variables["params"])


def assert_trains(grads, logits, eval_logits_a, eval_logits_b, logits_other_key):
    assert logits.shape == (2, 10) and logits.dtype == jnp.float32
    leaves = [np.asarray(g) for g in jax.tree.leaves(grads)]  # NumPy: no XLA program per shape
    assert all(np.isfinite(g).all() for g in leaves)
    assert all(g.any() for g in leaves)  # every parameter reaches the loss
    # Dropout changes the outputs in training only.
    assert not np.allclose(logits, logits_other_key)
    np.testing.assert_array_equal(eval_logits_a, eval_logits_b)


# ---------------------------------------------------------------- the building blocks


def test_models_are_the_design_names():
    assert {"googlenet", "googlenet_bn"} == set(googlenet.MODELS)
    assert {"inception_v4", "inception_resnet_v1", "inception_resnet_v2"} < set(inception_v4.MODELS)


def test_layers_read_like_the_figures():
    parse = inception_blocks.parse
    assert parse("3x3/2 V 384") == ("conv", (3, 3), 2, "VALID", 384)
    assert parse("1x7 224") == ("conv", (1, 7), 1, "SAME", 224)
    assert parse("max 3x3/2 V") == ("max", (3, 3), 2, "VALID", None)
    assert parse("avg 3x3") == ("avg", (3, 3), 1, "SAME", None)
    for bad in ("3x3", "max 3x3 64", "3x3 conv 64"):
        with pytest.raises(ValueError, match="cannot read layer"):
            parse(bad)


def test_residual_block_adds_the_scaled_linear_expansion_to_its_input():
    conv = functools.partial(inception_blocks.BasicConv, norm=None)
    x = jax.random.normal(jax.random.key(0), (1, 5, 5, 8))
    block = inception_blocks.Residual((("1x1 4",), ("1x1 2", "3x3 4")), 0.2, conv)
    variables = jax.jit(block.init)(jax.random.key(1), x)
    assert variables["params"]["expand"]["kernel"].shape == (1, 1, 8, 8)
    assert variables["params"]["expand"]["bias"].shape == (8,)  # linear: bias, no BN, no ReLU
    no_expansion = jax.tree.map(jnp.zeros_like, variables["params"]["expand"])
    params = {**variables["params"], "expand": no_expansion}
    np.testing.assert_allclose(jax.jit(block.apply)({"params": params}, x), jax.nn.relu(x))
    linear = block.clone(relu=False, scale=0.0)
    np.testing.assert_allclose(jax.jit(linear.apply)(variables, x), x)


# ---------------------------------------------------------------- GoogLeNet


def googlenet_params_from_table_1(num_classes: int = 1000) -> tuple[int, list[int]]:
    """Recounts Table 1 by hand: conv weights + biases, and each auxiliary classifier."""
    total = (7 * 7 * 3 * 64 + 64) + (64 * 64 + 64) + (3 * 3 * 64 * 192 + 192)
    aux = []
    channels = 192
    for name, (c1, c3r, c3, c5r, c5, pool) in googlenet.INCEPTION.items():
        total += channels * (c1 + c3r + c5r + pool) + c1 + c3r + c5r + pool
        total += 3 * 3 * c3r * c3 + c3 + 5 * 5 * c5r * c5 + c5
        channels = c1 + c3 + c5 + pool
        if name in googlenet.AUX_CLASSIFIERS:  # 4x4x128 after 5x5/3 pooling of 14x14
            fc = 4 * 4 * 128 * 1024 + 1024
            aux.append(channels * 128 + 128 + fc + 1024 * num_classes + num_classes)
    return total + 1024 * num_classes + num_classes, aux


def test_googlenet_parameters_recount_table_1():
    _, variables, _ = abstract_init("googlenet", 224)
    params = variables["params"]
    main, aux = googlenet_params_from_table_1()
    assert (main, tuple(aux)) == (GOOGLENET_PARAMS, GOOGLENET_AUX_PARAMS)
    assert param_count(params["aux1_classifier"]) == GOOGLENET_AUX_PARAMS[0]
    assert param_count(params["aux2_classifier"]) == GOOGLENET_AUX_PARAMS[1]
    assert param_count(params) == GOOGLENET_PARAMS + sum(GOOGLENET_AUX_PARAMS)  # 13,378,280
    _, variables, _ = abstract_init("googlenet", 224, aux_classifiers=False)
    assert param_count(variables["params"]) == GOOGLENET_PARAMS
    assert abs(GOOGLENET_PARAMS / 6.8e6 - 1) < 0.03  # the paper's "about 6.8M"


def test_googlenet_bn_replaces_conv_biases_with_batch_norm():
    _, variables, _ = abstract_init("googlenet_bn", 224, aux_classifiers=False)
    assert param_count(variables["params"]) == GOOGLENET_BN_PARAMS
    assert "batch_stats" in variables
    _, variables, _ = abstract_init("googlenet", 224)
    assert "batch_stats" not in variables


def test_googlenet_maps_match_table_1():
    logits, _, outputs = abstract_init("googlenet", 224)
    assert logits.shape == (1, 1000) and logits.dtype == jnp.float32
    sizes = {"3": 28, "4": 14, "5": 7}
    for name, widths in googlenet.INCEPTION.items():
        c1, _, c3, _, c5, pool = widths
        size = sizes[name[0]]
        assert outputs[f"inception_{name}"] == (1, size, size, c1 + c3 + c5 + pool), name
    assert outputs["inception_5b"] == (1, 7, 7, 1024)


def test_naive_inception_module_is_figure_2a():
    """Section 4's example, a 28x28x256 input with 128 1x1, 192 3x3 and 96 5x5 filters (module
    3b): the naive module passes the 256 input channels on through its max pooling branch and
    outputs 672; the reductions (128 before the 3x3s, 32 before the 5x5s, a 64-filter pool
    projection) bring it to 480 channels and about a third of the parameters."""
    x = jax.random.normal(jax.random.key(0), (1, 28, 28, 256))
    naive = googlenet.InceptionModule(googlenet.INCEPTION["3b"], "naive")
    y, variables = jax.jit(naive.init_with_output)(jax.random.key(1), x)
    assert y.shape == (1, 28, 28, 128 + 192 + 96 + 256)
    pooled = nn.max_pool(x, (3, 3), padding="SAME")
    np.testing.assert_array_equal(y[..., -256:], pooled)
    assert param_count(variables) == (
        256 * 128 + 128 + 3 * 3 * 256 * 192 + 192 + 5 * 5 * 256 * 96 + 96  # 1,089,952
    )
    reduced = googlenet.InceptionModule(googlenet.INCEPTION["3b"], "reductions")
    y, variables = jax.eval_shape(lambda: reduced.init_with_output(jax.random.key(1), x))
    assert y.shape == (1, 28, 28, 128 + 192 + 96 + 64)
    reductions = 256 * (128 + 32 + 64) + 128 + 32 + 64
    convs = 256 * 128 + 128 + 3 * 3 * 128 * 192 + 192 + 5 * 5 * 32 * 96 + 96
    assert param_count(variables) == reductions + convs == 388_736


def test_naive_googlenet_grows_every_module_by_its_input():
    """Figure 2(a) in every module of Table 1: each output is the module's 1x1, 3x3 and 5x5
    filters plus all its input channels (the pooling branch), so widths only grow."""
    _, variables, outputs = abstract_init("googlenet", 224, inception="naive")
    channels = 192
    for name, (c1, _, c3, _, c5, _) in googlenet.INCEPTION.items():
        channels += c1 + c3 + c5
        assert outputs[f"inception_{name}"][-1] == channels, name
    assert channels == 4_944  # 1,024 with the reductions
    assert param_count(variables["params"]) > 10 * GOOGLENET_PARAMS
    with pytest.raises(ConfigError, match="inception must be one of reductions, naive"):
        abstract_init("googlenet", 224, inception="wide")


def test_googlenet_sows_aux_logits_in_training_only():
    model = googlenet.MODELS["googlenet"](num_classes=10)
    x = jnp.zeros((3, 224, 224, 3))
    variables = abstract_init("googlenet", 224, num_classes=10)[1]

    def run(variables, train):
        rngs = {"dropout": jax.random.key(0)}
        return model.apply(variables, x, train=train, mutable=["aux"], rngs=rngs)

    _, updates = jax.eval_shape(functools.partial(run, train=True), variables)
    leaves = jax.tree.leaves(updates["aux"])
    assert set(updates["aux"]) == {"aux1", "aux2"} and len(leaves) == 2
    assert all(leaf.shape == (3, 10) and leaf.dtype == jnp.float32 for leaf in leaves)
    _, updates = jax.eval_shape(functools.partial(run, train=False), variables)
    assert "aux" not in updates


def test_googlenet_trains_at_its_smallest_input():
    size = googlenet.MIN_INPUT_SIZE  # 65: the 4a map is 5x5, just enough for 5x5/3 pooling
    step = forward_backward("googlenet", size, aux_weight=0.3)  # the aux heads get gradients
    grads, logits, aux, eval_logits, eval_updates = step(jax.random.key(1))
    _, logits_other_key, _, eval_again, _ = step(jax.random.key(2))
    assert_trains(grads, logits, eval_logits, eval_again, logits_other_key)
    assert [a.shape for a in jax.tree.leaves(aux)] == [(2, 10), (2, 10)]
    assert "aux" not in eval_updates


def test_googlenet_too_small_for_its_aux_classifiers_says_so():
    size = googlenet.MIN_INPUT_SIZE - 1
    with pytest.raises(ConfigError, match="at least 65x65 pixels"):
        abstract_init("googlenet", size)
    logits, _, _ = abstract_init("googlenet", 32, aux_classifiers=False)
    assert logits.shape == (1, 1000)


def test_googlenet_lrn_is_caffes():
    """Caffe's LRN: x / (1 + 1e-4 / 5 * sum of x^2 over 5 channels) ^ 0.75."""
    x = jax.random.normal(jax.random.key(0), (1, 2, 2, 7)) * 30
    y = layers.LocalResponseNorm(n=5, k=1.0, alpha=1e-4 / 5, beta=0.75).apply({}, x)
    xs = np.asarray(x)
    expected = np.empty_like(xs)
    for c in range(7):
        window = xs[..., max(0, c - 2) : c + 3]
        expected[..., c] = xs[..., c] / (1.0 + 1e-4 / 5 * (window**2).sum(-1)) ** 0.75
    np.testing.assert_allclose(y, expected, rtol=1e-5)


# ---------------------------------------------------------------- Inception-v4 / Inception-ResNet


@pytest.mark.parametrize("name", sorted(INCEPTION_PARAMS))
def test_inception_parameter_counts(name):
    _, variables, _ = abstract_init(name, 299)
    count = param_count(variables["params"])
    assert count == INCEPTION_PARAMS[name]
    if name in TIMM_PARAMS:
        assert abs(count - TIMM_PARAMS[name]) / TIMM_PARAMS[name] < 0.01


# Grid outputs (Figures 3, 9, 14, 15, and TF-slim's released Inception-ResNet-v2).
GRIDS = {
    "inception_v4": {"stem4": 384, "inception_a4": 384, "reduction_a": 1024,
                     "inception_b7": 1024, "reduction_b": 1536, "inception_c3": 1536},
    "inception_resnet_v1": {"stem2": 256, "inception_resnet_a5": 256, "reduction_a": 896,
                            "inception_resnet_b10": 896, "reduction_b": 1792,
                            "inception_resnet_c5": 1792},
    "inception_resnet_v2": {"stem3": 320, "inception_resnet_a10": 320, "reduction_a": 1088,
                            "inception_resnet_b20": 1088, "reduction_b": 2080,
                            "inception_resnet_c10": 2080, "conv_7b": 1536},
    "inception_resnet_v2_paper": {"stem4": 384, "reduction_a": 1152, "reduction_b": 2144},
}  # fmt: skip


def grid(block: str) -> int:
    """The grid a block's output is on at 299x299: 35, 17 or 8."""
    if block.startswith(("stem", "inception_a", "inception_resnet_a")):
        return 35
    if block.startswith(("reduction_a", "inception_b", "inception_resnet_b")):
        return 17
    return 8


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_inception_grids_are_35_17_8(name):
    logits, _, outputs = abstract_init(name, 299)
    assert logits.shape == (1, 1000) and logits.dtype == jnp.float32
    for block, channels in GRIDS[name].items():
        assert outputs[block] == (1, grid(block), grid(block), channels), block


@pytest.mark.parametrize("name", sorted(inception_v4.REDUCTION_A_FILTERS))
def test_reduction_a_uses_table_1_filters(name):
    k, l, m, n = inception_v4.REDUCTION_A_FILTERS[name]  # noqa: E741 (Table 1's names)
    params = abstract_init(name, 299)[1]["params"]["reduction_a"]
    # Figure 7 puts the max pool first; the released Inception-ResNet-v2 puts it last.
    single, triple = (
        ("branch1", "branch2") if name == "inception_resnet_v2" else ("branch2", "branch3")
    )
    assert params[f"{single}_1"]["conv"]["kernel"].shape[-1] == n
    assert params[f"{triple}_1"]["conv"]["kernel"].shape[-1] == k
    assert params[f"{triple}_2"]["conv"]["kernel"].shape[-1] == l
    assert params[f"{triple}_3"]["conv"]["kernel"].shape[-1] == m


@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v1", "inception_resnet_v2"])
def test_inception_trains_at_its_smallest_input(name):
    step = forward_backward(name, inception_v4.MIN_INPUT_SIZE)  # 75: the 8x8 grid is 1x1
    grads, logits, aux, eval_logits, _ = step(jax.random.key(1))
    _, logits_other_key, _, eval_again, _ = step(jax.random.key(2))
    assert_trains(grads, logits, eval_logits, eval_again, logits_other_key)
    assert not aux


def test_inception_too_small_input_says_so():
    with pytest.raises(ConfigError, match="at least 75x75 pixels"):
        abstract_init("inception_resnet_v1", inception_v4.MIN_INPUT_SIZE - 1)


def test_bfloat16_compute_keeps_float32_params_and_logits():
    for name, size in (("googlenet_bn", 224), ("inception_resnet_v1", 299)):
        logits, variables, _ = abstract_init(name, size, dtype=jnp.bfloat16)
        assert logits.dtype == jnp.float32
        assert {x.dtype for x in jax.tree.leaves(variables["params"])} == {jnp.dtype("float32")}
