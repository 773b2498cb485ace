"""ImageNet-scale data sets streamed from disk by tf.data: ILSVRC-2012 and Imagenette.

The small sets (CIFAR, MNIST) live on the devices and are augmented in the compiled step
(`cnn_jax.data.datasets`); these are too big for that. Each process reads its own shard of
the tfds records, and tf.data decodes and augments the JPEGs in parallel threads off the
training thread (with the ops of `cnn_jax.data.imagenet_ops`, which describes the papers'
augmentations), batches them and prefetches. The training loop gets numpy batches
`{"images": float32 [B, S, S, 3], "labels": int32 [B]}` of this process's B =
global_batch_size / process_count rows.

Determinism. The batch of step t is a pure function of (seed, t, process layout), so a run
resumed at step t sees exactly the batches an uninterrupted run would:
  - every epoch is its own tf.data pipeline; tfds's file order and the example shuffle use
    seeds derived from (seed, epoch, process_index), and nothing reshuffles in between;
  - a resumed epoch skips its first (start_step mod steps_per_epoch) batches of raw records,
    before any decoding, so resuming costs a read, not a decode, of those records;
  - every random augmentation is a stateless op seeded from (seed, epoch, process_index,
    the example's position in the epoch), and the parallel maps keep their order;
  - steps_per_epoch = examples_per_process // local_batch; the shuffled remainder is dropped.

Config fields read, all required (the recipes in experiments/configs/_imagenet.py set them):
  dataset.name            "imagenet2012" (1000 classes) or "imagenette" (10 classes)
  dataset.tfds_name       tfds name/config to read ("" = imagenet2012 / imagenette/full-size-v2;
                          e.g. "imagenette/320px-v2" for the smaller JPEGs)
  dataset.data_dir        tfds data_dir ("" = tfds's default, ~/tensorflow_datasets)
  dataset.manual_dir      folder with ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar
                          ("" = DATA_DIR/downloads/manual); imagenet2012 only
  dataset.download        prepare the data set if it is missing (download for imagenette,
                          build from the manual download for imagenet2012)
  dataset.shuffle_buffer  raw (undecoded) records in the per-process shuffle buffer
  augment.name            alexnet | vgg | resnet | inception
  augment.image_size      training/eval crop S
  augment.resize          alexnet: shorter side and square of the training image
  augment.scale_range     vgg/resnet: range (low, high) of the shorter side S
  augment.area_range      inception: fraction (low, high) of the image area
  augment.aspect_range    inception: crop aspect ratio (low, high)
  augment.pca_noise       std of the PCA colour noise alphas (0 = off)
  augment.mean_rgb        per-channel mean subtracted from the [0, 1] image
  augment.stddev_rgb      per-channel standard deviation it is divided by
  augment.flip            random horizontal flips
  augment.normalize       standardize | subtract_mean
  eval.crop               center | ten_crop
  eval.resize             shorter side before cropping (0 = augment.resize for alexnet,
                          round(image_size / 0.875) otherwise)
  eval.batch_size         (read by the training loop, which passes it to eval_batches)
"""

import dataclasses
import functools
import os
from typing import Any, Callable, Iterator

import ml_collections
import numpy as np

from cnn_jax.data import imagenet_ops as ops
from cnn_jax.data import tfds_source
from cnn_jax.errors import ConfigError, DataError

NUM_CLASSES = {"imagenet2012": 1000, "imagenette": 10}
TFDS_NAMES = {"imagenet2012": "imagenet2012", "imagenette": "imagenette/full-size-v2"}
SPLITS = ("train", "validation")
AUGMENTATIONS = ("alexnet", "vgg", "resnet", "inception")
EVAL_CROPS = ("center", "ten_crop")
MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")

_EVAL_CROP_FRACTION = 0.875  # 224 / 256
_SHUFFLE_FILES, _SHUFFLE_EXAMPLES = 0, 1  # purposes of the derived seeds
_tf = ops.tensorflow


@dataclasses.dataclass(frozen=True)
class Settings:
    """The validated fields of a config that the pipelines use (see the module docstring)."""

    name: str
    tfds_name: str
    data_dir: str
    manual_dir: str
    download: bool
    shuffle_buffer: int
    augment: str
    image_size: int
    resize: int
    scale_range: tuple[int, int]
    area_range: tuple[float, float]
    aspect_range: tuple[float, float]
    pca_noise: float
    flip: bool
    normalize: str
    eval_crop: str
    eval_resize: int
    mean_rgb: tuple[float, float, float]
    stddev_rgb: tuple[float, float, float]


def settings(config: ml_collections.ConfigDict) -> Settings:
    """Reads and checks the fields of `config`; a missing field is an error that names it."""
    get = functools.partial(_field, config)
    name = get("dataset.name")
    if name not in NUM_CLASSES:
        raise ConfigError(
            f"Unknown streamed dataset.name {name!r}; known: {', '.join(NUM_CLASSES)}."
        )
    augment = get("augment.name")
    if augment not in AUGMENTATIONS:
        raise ConfigError(f"Unknown augment.name {augment!r}; known: {', '.join(AUGMENTATIONS)}.")
    image_size = int(get("augment.image_size"))
    resize = int(get("augment.resize"))
    scale_range = tuple(int(v) for v in get("augment.scale_range"))
    area_range = tuple(float(v) for v in get("augment.area_range"))
    aspect_range = tuple(float(v) for v in get("augment.aspect_range"))
    pca_noise = float(get("augment.pca_noise"))
    eval_crop = get("eval.crop")
    normalize_method = get("augment.normalize")
    # AlexNet tests on the 256x256 image it trains on; the others on image_size / 0.875.
    eval_resize = int(get("eval.resize")) or (
        resize if augment == "alexnet" else round(image_size / _EVAL_CROP_FRACTION)
    )
    shuffle_buffer = int(get("dataset.shuffle_buffer"))
    mean_rgb = tuple(float(v) for v in get("augment.mean_rgb"))
    stddev_rgb = tuple(float(v) for v in get("augment.stddev_rgb"))
    if len(mean_rgb) != 3 or len(stddev_rgb) != 3 or min(stddev_rgb) <= 0:
        raise ConfigError(
            f"augment.mean_rgb and augment.stddev_rgb must be 3 values each, the standard "
            f"deviations positive; got {mean_rgb} and {stddev_rgb}."
        )

    if image_size <= 0:
        raise ConfigError(f"augment.image_size must be positive, got {image_size}.")
    if augment == "alexnet" and resize < image_size:
        raise ConfigError(
            f"augment.resize={resize} must be at least augment.image_size={image_size}."
        )
    jitters = augment in ("vgg", "resnet")
    if jitters and not (len(scale_range) == 2 and image_size <= scale_range[0] <= scale_range[1]):
        raise ConfigError(
            f"augment.scale_range must be (low, high) with image_size={image_size} <= low <= high, "
            f"got {scale_range}."
        )
    if not (len(area_range) == 2 and 0 < area_range[0] <= area_range[1] <= 1):
        raise ConfigError(
            f"augment.area_range must satisfy 0 < low <= high <= 1, got {area_range}."
        )
    if not (len(aspect_range) == 2 and 0 < aspect_range[0] <= aspect_range[1]):
        raise ConfigError(f"augment.aspect_range must satisfy 0 < low <= high, got {aspect_range}.")
    if pca_noise < 0:
        raise ConfigError(f"augment.pca_noise must be >= 0, got {pca_noise}.")
    if normalize_method not in ops.NORMALIZATIONS:
        raise ConfigError(
            f"Unknown augment.normalize {normalize_method!r}; "
            f"known: {', '.join(ops.NORMALIZATIONS)}."
        )
    if eval_crop not in EVAL_CROPS:
        raise ConfigError(f"Unknown eval.crop {eval_crop!r}; known: {', '.join(EVAL_CROPS)}.")
    if eval_resize < image_size:
        raise ConfigError(
            f"eval.resize={eval_resize} must be at least augment.image_size={image_size}."
        )
    if shuffle_buffer <= 0:
        raise ConfigError(f"dataset.shuffle_buffer must be positive, got {shuffle_buffer}.")
    return Settings(
        name=name,
        tfds_name=get("dataset.tfds_name") or TFDS_NAMES[name],
        data_dir=get("dataset.data_dir"),
        manual_dir=get("dataset.manual_dir"),
        download=bool(get("dataset.download")),
        shuffle_buffer=shuffle_buffer,
        augment=augment,
        image_size=image_size,
        resize=resize,
        scale_range=scale_range,
        area_range=area_range,
        aspect_range=aspect_range,
        pca_noise=pca_noise,
        flip=bool(get("augment.flip")),
        normalize=normalize_method,
        eval_crop=eval_crop,
        eval_resize=eval_resize,
        mean_rgb=mean_rgb,
        stddev_rgb=stddev_rgb,
    )


# ----------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------


def train_batches(
    config: ml_collections.ConfigDict,
    global_batch_size: int,
    seed: int,
    start_step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless augmented training batches of this process, from step `start_step` on.

    Yields {"images": float32 [B, S, S, 3], "labels": int32 [B]} with B = global_batch_size /
    process_count. Batch t is the same whether the iterator started at 0 or at start_step <= t.
    """
    s = settings(config)
    local_batch = _local_batch(global_batch_size, process_index, process_count)
    if start_step < 0:
        raise ConfigError(f"start_step must be >= 0, got {start_step}.")
    tfds = _tfds()
    builder = _open(s)
    shard = tfds.even_splits("train", n=process_count, drop_remainder=True)[process_index]
    per_process = _cardinality(builder, shard)
    steps_per_epoch = per_process // local_batch
    if steps_per_epoch == 0:
        raise ConfigError(
            f"The per-process batch of {local_batch} exceeds the {per_process} training examples "
            f"of each of the {process_count} process shards of {s.name}."
        )

    def batches() -> Iterator[dict[str, np.ndarray]]:
        epoch, skip = divmod(start_step, steps_per_epoch)
        while True:
            dataset = _train_epoch(
                builder, shard, s, seed, epoch, process_index, local_batch, steps_per_epoch, skip
            )
            yield from dataset.as_numpy_iterator()
            epoch, skip = epoch + 1, 0

    return batches()


def eval_batches(
    config: ml_collections.ConfigDict,
    split: str,
    batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    views: Callable[[Any], Any] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """One pass over this process's part of `split`, in batches of `batch_size` (per process).

    Yields {"images": float32 [B, S, S, 3] ("center") or [B, 10, S, S, 3] ("ten_crop"), or
    what `views(encoded image)` makes of each image, normalized, "labels": int32 [B], "mask":
    bool [B]}; padding rows (zeros, mask False) fill the last batch. Every process yields the
    same number of batches, ceil(ceil(N / process_count) /
    batch_size), so that multi-process evaluation steps stay in lockstep.
    """
    s = settings(config)
    _check_split(split)
    _check_process(process_index, process_count)
    if batch_size <= 0:
        raise ConfigError(f"The eval batch size must be positive, got {batch_size}.")
    tf, tfds = _tf(), _tfds()
    builder = _open(s)
    total = _cardinality(builder, split)
    shard_size = total // process_count + int(process_index < total % process_count)
    num_batches = _ceil_div(_ceil_div(total, process_count), batch_size)
    shard = tfds.even_splits(split, n=process_count)[process_index]
    dataset = builder.as_dataset(
        split=shard, shuffle_files=False, decoders=_skip_decoding(), read_config=_read_config()
    )

    def preprocess(example):
        image = example["image"]
        return {
            "images": _normalize(views(image), s) if views else ops.eval_preprocess(image, s),
            "labels": tf.cast(example["label"], tf.int32),
            "mask": tf.constant(True),
        }

    dataset = dataset.take(shard_size).map(
        preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    padding = tf.data.Dataset.from_tensors(
        {
            "images": tf.zeros(dataset.element_spec["images"].shape, tf.float32),
            "labels": tf.constant(0, tf.int32),
            "mask": tf.constant(False),
        }
    ).repeat()
    dataset = dataset.concatenate(padding).take(num_batches * batch_size)
    dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(_options())
    return dataset.as_numpy_iterator()


def dense_images(
    config: ml_collections.ConfigDict, split: str, scale: int
) -> Iterator[dict[str, np.ndarray]]:
    """One pass over `split` (one process), one whole image at a time for dense evaluation
    (Simonyan & Zisserman 2014, section 3.2): {"images": float32 [1, H, W, 3] with the shorter
    side `scale` (see `whole_image`), "labels": int32 [1], "mask": bool [1]}."""
    s = settings(config)
    _check_split(split)
    tf = _tf()
    dataset = _open(s).as_dataset(
        split=split, shuffle_files=False, decoders=_skip_decoding(), read_config=_read_config()
    )

    def preprocess(example):
        image = _normalize(ops.whole_image(example["image"], scale), s)
        label = tf.cast(example["label"], tf.int32)
        return {"images": image, "labels": label, "mask": tf.constant(True)}

    dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(1).prefetch(tf.data.AUTOTUNE).with_options(_options()).as_numpy_iterator()


def multi_crop_batches(
    config: ml_collections.ConfigDict, split: str, scale: int, batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """One pass over `split` (one process) as VGG's 50 crops per image at `scale` (section
    3.2, Table 5): {"images": float32 [B, 50, S, S, 3], "labels", "mask"} (see `grid_crops`)."""
    size = settings(config).image_size

    def views(encoded):
        return ops.grid_crops(ops.resize_shorter_side(ops.decode(encoded), scale) / 255.0, size)

    return eval_batches(config, split, batch_size, views=views)


def num_examples(config: ml_collections.ConfigDict, split: str) -> int:
    """Number of examples in the whole `split` (all processes together)."""
    s = settings(config)
    _check_split(split)
    return _cardinality(_open(s), split)


# ----------------------------------------------------------------------------------------
# tfds plumbing
# ----------------------------------------------------------------------------------------


def _normalize(images, s: Settings):
    """Per-channel normalization of `images` ([0, 1] RGB) as the config asks."""
    return ops.normalize(images, s.normalize, s.mean_rgb, s.stddev_rgb)


def _train_epoch(
    builder, shard, s: Settings, seed, epoch, process_index, local_batch, steps_per_epoch, skip
):
    """Epoch `epoch` of this process's shard, from its batch `skip` on."""
    tf = _tf()
    read_config = _read_config(shuffle_seed=_derive(seed, epoch, process_index, _SHUFFLE_FILES))
    dataset = builder.as_dataset(
        split=shard, shuffle_files=True, decoders=_skip_decoding(), read_config=read_config
    )
    dataset = dataset.map(lambda example: (example["image"], example["label"]))  # drop the rest
    dataset = dataset.shuffle(
        s.shuffle_buffer,
        seed=_derive(seed, epoch, process_index, _SHUFFLE_EXAMPLES),
        reshuffle_each_iteration=False,
    )
    # Position in the epoch -> the example's augmentation seed; skipped records are never decoded.
    dataset = dataset.take(steps_per_epoch * local_batch).enumerate().skip(skip * local_batch)
    epoch_key = tf.constant(_derive_pair(seed, epoch, process_index), tf.int64)

    def preprocess(index, example):
        image, label = example
        example_seed = tf.random.experimental.stateless_fold_in(epoch_key, index)
        images = ops.train_preprocess(image, s, example_seed)
        return {"images": images, "labels": tf.cast(label, tf.int32)}

    dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(local_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return dataset.with_options(_options())


def _open(s: Settings):
    """The tfds builder of `s`, prepared (downloaded or built from the manual files) if allowed."""
    tfds = _tfds()
    try:
        builder = tfds.builder(s.tfds_name, data_dir=s.data_dir or None)
    except Exception as e:  # DatasetNotFoundError, unknown config names, ...
        raise ConfigError(
            f"dataset.tfds_name {s.tfds_name!r} is not a tfds data set: {e}"
        ) from None
    try:
        builder.as_dataset(split=SPLITS[0], shuffle_files=False, decoders=_skip_decoding())
        return builder
    except AssertionError:  # tfds's way of saying the data set is not prepared.
        pass
    where = builder.data_dir_root
    download_config = None
    if s.name == "imagenet2012":
        manual_dir = s.manual_dir or os.path.join(where, "downloads", "manual")
        exists = _tf().io.gfile.exists
        if not all(exists(os.path.join(manual_dir, f)) for f in MANUAL_FILES):
            raise DataError(
                f"imagenet2012 is not prepared in tfds data_dir {where} and needs the manual "
                f"download: "
                f"put {' and '.join(MANUAL_FILES)} (from https://image-net.org) in {manual_dir} "
                f"or point --config.dataset.manual_dir at the folder that holds them."
            )
        download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    if not s.download:
        raise DataError(
            f"{s.name} is not prepared in tfds data_dir {where}; prepare it with "
            f"`tfds build {s.tfds_name} --data_dir={where}` or set dataset.download=True."
        )
    if download_config is None:
        tfds_source.check_download_hosts(
            s.name, builder, where, f"run `tfds build {s.tfds_name} --data_dir=DIR` where there "
            "is a network, copy DIR here and pass --config.dataset.data_dir=DIR",
        )
    try:
        builder.download_and_prepare(download_config=download_config)
    except Exception as e:  # Network, disk, checksum and archive failures all end here.
        raise DataError(f"tfds could not prepare {s.name} in {where}: {e}") from None
    return builder


def _cardinality(builder, split) -> int:
    """Number of examples of `split` (a name or a tfds sub-split) without reading them."""
    dataset = builder.as_dataset(
        split=split, shuffle_files=False, decoders=_skip_decoding(), read_config=_read_config()
    )
    count = int(dataset.cardinality())
    if count < 0:  # unknown to tf.data; tfds's metadata knows
        count = builder.info.splits[split].num_examples
    return count


def _read_config(shuffle_seed: int | None = None):
    return _tfds().ReadConfig(shuffle_seed=shuffle_seed, try_autocache=False, options=_options())


def _options():
    tf = _tf()
    options = tf.data.Options()
    options.deterministic = True
    options.threading.max_intra_op_parallelism = 1  # parallel examples, not parallel ops
    options.experimental_optimization.map_parallelization = True
    return options


def _skip_decoding() -> dict[str, Any]:
    return {"image": _tfds().decode.SkipDecoding()}


def _derive(seed: int, *values: int) -> int:
    """A 63-bit seed that depends on `seed` and every value, the same on every platform."""
    words = np.random.SeedSequence([seed % 2**64, *values]).generate_state(2, np.uint32)
    return int(words[0]) << 31 | int(words[1]) >> 1


def _derive_pair(seed: int, *values: int) -> list[int]:
    """A [2]-int64 key for tf's stateless random ops."""
    return [_derive(seed, *values, 2), _derive(seed, *values, 3)]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"Unknown split {split!r}; known: {', '.join(SPLITS)}.")


def _check_process(process_index: int, process_count: int) -> None:
    if process_count <= 0 or not 0 <= process_index < process_count:
        raise ConfigError(
            f"process_index={process_index} is not in [0, process_count={process_count})."
        )


def _local_batch(global_batch_size: int, process_index: int, process_count: int) -> int:
    _check_process(process_index, process_count)
    if global_batch_size <= 0 or global_batch_size % process_count:
        raise ConfigError(
            f"The global batch size {global_batch_size} must be a positive multiple of the "
            f"{process_count} processes."
        )
    return global_batch_size // process_count


def _field(config: ml_collections.ConfigDict, path: str) -> Any:
    """config[path] for a dotted path; ConfigError if a section or the field is absent."""
    node = config
    for key in path.split("."):
        if node is None or not hasattr(node, "keys") or key not in node:
            raise ConfigError(
                f"The config has no field {path}; the recipes in "
                "experiments/configs/_imagenet.py set every field the ImageNet pipeline reads."
            )
        node = node[key]
    return node



def _tfds():
    _tf()
    import tensorflow_datasets as tfds

    return tfds
