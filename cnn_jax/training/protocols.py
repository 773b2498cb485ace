"""The papers' test protocols on a trained ImageNet run, at one or several scales.

    center      the centre crop of the image rescaled to shorter side Q
    ten_crop    its 4 corner and centre crops and their flips (AlexNet; ResNet Table 2)
    dense       VGG section 3.2: the net applied to the whole image rescaled to Q, its class
                score map averaged over positions; the posteriors of the image and of its
                horizontal flip averaged. VGG's FC layers become convolutions (fc6 7x7, fc7
                and fc8 1x1); nets that end in a global average pool (ResNet, GoogLeNet,
                Inception) are run on the whole image as they are.
    multi_crop  VGG section 3.2: 50 crops per scale, a regular 5x5 grid and their flips

Several scales Q (VGG Tables 4-5: {S - 32, S, S + 32} for a fixed training scale S,
{256, 384, 512} for jittered S; ResNet Table 4: {224, 256, 384, 480, 640}) are combined by
averaging each image's posteriors over the scales. Returns top-1/top-5 error per scale and
combined.
"""

from typing import Any, Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from cnn_jax.data import catalog
from cnn_jax.errors import ConfigError
from cnn_jax.models import googlenet, inception_v4, resnet, vgg
from cnn_jax.training import checkpoint

PROTOCOLS = ("center", "ten_crop", "dense", "multi_crop")
GLOBAL_POOL_NETS = (resnet.ResNet, googlenet.GoogLeNet, inception_v4.Inception)
MULTI_CROP_BATCH = 4  # images per batch of 50 views each


def dense_model(model: nn.Module, name: str) -> nn.Module:
    """The net that classifies a whole image: VGG with its FC layers as convolutions, a
    global-average-pool net as it is; any other net is an error."""
    if isinstance(model, vgg.VGG):
        return model.clone(dense=True)
    if isinstance(model, GLOBAL_POOL_NETS):
        return model
    raise ConfigError(
        f"Dense evaluation needs a net whose head applies as convolutions over a whole image "
        f"(VGG, or one ending in global average pooling: ResNet, GoogLeNet, Inception); "
        f"{name}'s is not: use --protocol=center, ten_crop or multi_crop."
    )


def make_log_posteriors(model: nn.Module, protocol: str) -> Callable[[Any, jax.Array], jax.Array]:
    """`log_posteriors(variables, images) -> [B, classes]`: the log of each image's class
    posteriors, averaged over its views (crops, or the image and its flip)."""

    def log_mean_softmax(logits):  # [B, views, classes] -> [B, classes]
        return jax.nn.logsumexp(jax.nn.log_softmax(logits), axis=1) - jnp.log(logits.shape[1])

    def log_posteriors(variables, images):
        if protocol == "dense":  # [1, H, W, 3]: the image and its mirror image
            both = jnp.concatenate([images, images[:, :, ::-1]])
            return log_mean_softmax(model.apply(variables, both, train=False)[None])
        if images.ndim == 5:  # [B, views, S, S, 3]
            batch, views = images.shape[:2]
            flat = images.reshape(batch * views, *images.shape[2:])
            logits = model.apply(variables, flat, train=False)
            return log_mean_softmax(logits.reshape(batch, views, -1))
        return jax.nn.log_softmax(model.apply(variables, images, train=False))

    return jax.jit(log_posteriors)


def batches(
    config: ml_collections.ConfigDict, protocol: str, scale: int
) -> Iterator[dict[str, np.ndarray]]:
    """The validation split (the papers' test set) as `protocol`'s views at scale `scale`."""
    from cnn_jax.data import imagenet

    if protocol == "dense":
        return imagenet.dense_images(config, "validation", scale)
    if protocol == "multi_crop":
        return imagenet.multi_crop_batches(config, "validation", scale, MULTI_CROP_BATCH)
    at_scale = ml_collections.ConfigDict(config.to_dict())
    at_scale.eval.crop, at_scale.eval.resize = protocol, scale
    return imagenet.eval_batches(at_scale, "validation", config.eval.batch_size)


def errors(log_probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 and top-5 error (%) and mean loss of posteriors [N, classes]."""
    top5 = np.argsort(-log_probs, axis=1)[:, :5]
    return {
        "error": 100.0 * float(np.mean(top5[:, 0] != labels)),
        "top5_error": 100.0 * float(np.mean(~np.any(top5 == labels[:, None], axis=1))),
        "loss": float(-np.mean(log_probs[np.arange(len(labels)), labels])),
    }


def evaluate(
    workdir: epath.PathLike, protocol: str, scales: list[int] | None = None, step: int | None = None
) -> dict[str, Any]:
    """Evaluates the checkpoint at `step` (default: the latest) of an ImageNet run with
    `protocol` at each of `scales` (default: the run's eval.resize), on the validation split
    or its first eval.max_examples images; returns {"step", "protocol", "scales": {Q:
    metrics}, "combined": metrics}. Runs with parameter averaging are evaluated with the
    average, as in training."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"Unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}.")
    if jax.process_count() > 1:
        raise ConfigError("The test protocols run in one process; start the evaluation on one "
                          "host.")
    config = checkpoint.read_config(workdir)
    if not catalog.is_streaming(config.dataset.name):
        raise ConfigError(
            f"--protocol applies to ImageNet-style runs; {config.dataset.name} is evaluated on its "
            "single view (leave --protocol out)."
        )
    model, state, config = checkpoint.restore_state(workdir, step)
    size = config.augment.image_size
    scales = scales or [config.eval.resize]
    if protocol == "dense":
        model = dense_model(model, config.model.name)
    if min(scales) < size:
        raise ConfigError(f"Every scale must be at least the training crop, {size}; got "
                          f"{min(scales)}.")
    log_posteriors = make_log_posteriors(model, protocol)
    variables = jax.device_put(state.eval_variables)

    limit = config.eval.get("max_examples") or None  # as training's evaluation; 0 = all

    per_scale, summed, labels = {}, None, None
    for scale in scales:
        scale_probs, scale_labels = [], []
        for batch in batches(config, protocol, scale):
            mask = batch["mask"]
            scale_probs.append(np.asarray(log_posteriors(variables, batch["images"]))[mask])
            scale_labels.append(batch["labels"][mask])
            if limit and sum(map(len, scale_labels)) >= limit:
                break
        log_probs = np.concatenate(scale_probs)[:limit]
        scale_labels = np.concatenate(scale_labels)[:limit]
        per_scale[scale] = errors(log_probs, scale_labels)
        if labels is not None and not np.array_equal(labels, scale_labels):
            raise AssertionError("The scales saw the images in different orders.")
        labels = scale_labels
        summed = np.exp(log_probs) if summed is None else summed + np.exp(log_probs)
    combined = errors(np.log(summed / len(scales)), labels)
    return {"step": int(state.step), "protocol": protocol, "scales": per_scale,
            "combined": combined}
