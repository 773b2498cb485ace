"""The streamed ImageNet / Imagenette pipeline: shapes, augmentations, determinism, shards.

tfds is mocked throughout: `fake_tfds` serves small encoded images (PNG, JPEG, grayscale, of
varied sizes) whose train labels are their indices, and honours tfds sub-splits, so that
process shards and resumption can be checked example by example. Images are 32x32.
"""

import contextlib
import functools
import io
import socket
import tarfile
import types

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core import splits as tfds_splits

from cnn_jax.data import imagenet, imagenet_ops
from cnn_jax.data.imagenet_ops import MEAN_RGB
from cnn_jax.errors import ConfigError, DataError
from experiments.configs import _imagenet

NUM_TRAIN, NUM_VAL = 24, 10
SIZE = 32


def config(
    augment="resnet", dataset="imagenette", normalize="standardize", **eval_fields
) -> ml_collections.ConfigDict:
    c = _imagenet.base("resnet50", None)
    c.dataset.name, c.augment.name = dataset, augment
    c.augment.image_size = SIZE
    c.augment.resize = 36  # alexnet: the 36x36 image the 32-crops come from
    c.augment.scale_range = (36, 48)
    c.augment.normalize = normalize
    c.dataset.shuffle_buffer = 8
    c.eval.resize = 0  # image_size / 0.875, or augment.resize for alexnet
    c.eval.update(eval_fields)
    return c


def encoded_images(count: int, seed: int, colour=None) -> list[bytes]:
    """Varied sizes (some below the crop size), every third one grayscale, every third JPEG."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        shape = (20 + 7 * i % 31, 20 + 11 * i % 31, 3)
        if colour is not None:
            pixels = np.broadcast_to(np.array(colour, np.uint8), shape)
            images.append(tf.io.encode_png(pixels).numpy())
        elif i % 3 == 0:
            gray = rng.integers(0, 256, shape[:2] + (1,), np.uint8)
            images.append(tf.io.encode_png(gray).numpy())
        elif i % 3 == 1:
            images.append(tf.io.encode_jpeg(rng.integers(0, 256, shape, np.uint8)).numpy())
        else:
            images.append(tf.io.encode_png(rng.integers(0, 256, shape, np.uint8)).numpy())
    return images


@contextlib.contextmanager
def fake_tfds(colour=None, corrupt=()):
    """tfds mocked with encoded images; train labels 0..23 and validation labels 0..9 in order.

    The train images whose labels are in `corrupt` are bytes that no decoder accepts.
    """
    train = encoded_images(NUM_TRAIN, 0, colour)
    train = [b"not an image" if i in corrupt else image for i, image in enumerate(train)]
    data = {
        "train": (train, np.arange(NUM_TRAIN)),
        "validation": (encoded_images(NUM_VAL, 1, colour), np.arange(NUM_VAL)),
    }
    infos = {name: types.SimpleNamespace(num_examples=len(y)) for name, (_, y) in data.items()}

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        assert isinstance(decoders["image"], tfds.decode.SkipDecoding)  # decoded by the pipeline
        parts = []
        for instruction in tfds_splits.AbstractSplit.from_spec(split).to_absolute(infos):
            images, labels = data[instruction.splitname]
            rows = slice(instruction.from_, instruction.to)
            part = {"image": images[rows], "label": labels[rows]}
            parts.append(tf.data.Dataset.from_tensor_slices(part))
        return functools.reduce(tf.data.Dataset.concatenate, parts)

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        yield


def take(iterator, count):
    return [next(iterator) for _ in range(count)]


@pytest.mark.parametrize("augment", imagenet.AUGMENTATIONS)
def test_train_batches_for_every_augmentation(augment):
    with fake_tfds():
        (batch,) = take(imagenet.train_batches(config(augment), 8, seed=0), 1)
    assert batch["images"].shape == (8, SIZE, SIZE, 3) and batch["images"].dtype == np.float32
    assert batch["labels"].shape == (8,) and batch["labels"].dtype == np.int32
    assert np.isfinite(batch["images"]).all()
    assert -2.5 < batch["images"].mean() < 2.5 and batch["images"].std() > 0.3  # normalized
    assert set(batch["labels"]) <= set(range(NUM_TRAIN)) and len(set(batch["labels"])) == 8


def test_tfds_random_mock_data_streams():
    """tfds's own mock: random JPEGs of 5-50 px, random labels, the same for every split."""
    for dataset, classes in (("imagenette", 10), ("imagenet2012", 1000)):
        assert imagenet.NUM_CLASSES[dataset] == classes
        with tfds.testing.mock_data(num_examples=12):
            batch = next(imagenet.train_batches(config("inception", dataset), 4, seed=0))
            evals = list(imagenet.eval_batches(config("inception", dataset), "validation", 5))
            assert imagenet.num_examples(config(dataset=dataset), "validation") == 12
        assert batch["images"].shape == (4, SIZE, SIZE, 3) and batch["labels"].max() < classes
        assert [b["images"].shape for b in evals] == [(5, SIZE, SIZE, 3)] * 3
        assert [b["mask"].sum() for b in evals] == [5, 5, 2]


@pytest.mark.parametrize(
    "crop, shape", [("center", (SIZE, SIZE, 3)), ("ten_crop", (10, SIZE, SIZE, 3))]
)
def test_eval_batches_pad_the_last_batch_with_a_mask(crop, shape):
    with fake_tfds():
        batches = list(imagenet.eval_batches(config(crop=crop), "validation", 4))
    assert len(batches) == 3
    for batch in batches:
        assert batch["images"].shape == (4, *shape) and batch["images"].dtype == np.float32
        assert batch["labels"].dtype == np.int32 and batch["mask"].dtype == bool
    np.testing.assert_array_equal(batches[-1]["mask"], [True, True, False, False])
    assert not batches[-1]["images"][2:].any()
    labels = np.concatenate([b["labels"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(labels, np.arange(NUM_VAL))  # one pass, in order


def test_eval_shards_cover_the_split_in_equal_numbers_of_batches():
    with fake_tfds():
        shards = [list(imagenet.eval_batches(config(), "validation", 2, i, 3)) for i in range(3)]
        assert imagenet.num_examples(config(), "validation") == NUM_VAL
    assert [len(batches) for batches in shards] == [2, 2, 2]  # shards of 4, 3 and 3 examples
    labels = [np.concatenate([b["labels"][b["mask"]] for b in batches]) for batches in shards]
    assert [len(x) for x in labels] == [4, 3, 3]
    np.testing.assert_array_equal(np.sort(np.concatenate(labels)), np.arange(NUM_VAL))


COLOUR = np.array([200, 100, 50])
NORMALIZED_COLOUR = {  # the constant colour as the net sees it, by augment.normalize
    "standardize": (COLOUR / 255 - np.array(MEAN_RGB)) / np.array(imagenet_ops.STDDEV_RGB),
    "subtract_mean": COLOUR - 255 * np.array(MEAN_RGB),  # 76.3, -16.3, -53.5
}


@pytest.mark.parametrize("method", imagenet_ops.NORMALIZATIONS)
def test_eval_normalizes_a_constant_colour(method):
    expected = NORMALIZED_COLOUR[method]
    with fake_tfds(colour=COLOUR):
        center = next(imagenet.eval_batches(config(normalize=method), "validation", 4))
        ten_crop = config(normalize=method, crop="ten_crop")
        views = next(imagenet.eval_batches(ten_crop, "validation", 4))
    for images in (center["images"], views["images"]):
        np.testing.assert_allclose(images, np.broadcast_to(expected, images.shape), atol=1e-4)


def test_training_inputs_of_subtract_mean_are_0_255_pixels_minus_the_mean():
    c = config("resnet", normalize="subtract_mean")
    c.augment.pca_noise = 0.0
    with fake_tfds(colour=COLOUR):
        (batch,) = take(imagenet.train_batches(c, 4, seed=0), 1)
    expected = np.broadcast_to(NORMALIZED_COLOUR["subtract_mean"], batch["images"].shape)
    np.testing.assert_allclose(batch["images"], expected, atol=1e-3)


def test_ten_crop_takes_corners_centre_and_their_mirror_images():
    image = tf.reshape(tf.range(6 * 6 * 3, dtype=tf.float32), [6, 6, 3])
    views = imagenet_ops.ten_crop(image, 4).numpy()
    full = image.numpy()
    np.testing.assert_array_equal(views[0], full[:4, :4])
    np.testing.assert_array_equal(views[3], full[2:, 2:])
    np.testing.assert_array_equal(views[4], full[1:5, 1:5])
    np.testing.assert_array_equal(views[5:], views[:5, :, ::-1])


def test_same_seed_same_batches_and_resumed_runs_see_the_same_batches():
    c = config("alexnet")  # flips, crops and PCA noise: every random draw
    with fake_tfds():
        fresh = take(imagenet.train_batches(c, 8, seed=0), 6)  # 3 steps per epoch
        again = next(imagenet.train_batches(c, 8, seed=0))
        other = next(imagenet.train_batches(c, 8, seed=1))
        resumed = {
            k: take(imagenet.train_batches(c, 8, seed=0, start_step=k), 2) for k in (2, 4)
        }
    np.testing.assert_array_equal(again["images"], fresh[0]["images"])
    np.testing.assert_array_equal(again["labels"], fresh[0]["labels"])
    assert not np.array_equal(other["labels"], fresh[0]["labels"])
    for k, batches in resumed.items():
        for offset, batch in enumerate(batches):
            np.testing.assert_array_equal(batch["images"], fresh[k + offset]["images"])
            np.testing.assert_array_equal(batch["labels"], fresh[k + offset]["labels"])
    epochs = [np.concatenate([b["labels"] for b in fresh[i : i + 3]]) for i in (0, 3)]
    for labels in epochs:  # each epoch is a permutation of the data, reshuffled per epoch
        np.testing.assert_array_equal(np.sort(labels), np.arange(NUM_TRAIN))
    assert not np.array_equal(epochs[0], epochs[1])


def test_resuming_skips_records_without_decoding_them():
    c = config("vgg")
    with fake_tfds():
        first, second = take(imagenet.train_batches(c, 8, seed=3), 2)
    with fake_tfds(corrupt=set(first["labels"].tolist())):
        resumed = next(imagenet.train_batches(c, 8, seed=3, start_step=1))
        with pytest.raises(tf.errors.InvalidArgumentError):
            next(imagenet.train_batches(c, 8, seed=3))  # step 0 does decode them
    np.testing.assert_array_equal(resumed["images"], second["images"])


def test_processes_read_disjoint_shards():
    with fake_tfds():
        streams = [take(imagenet.train_batches(config(), 8, 0, 0, i, 2), 3) for i in range(2)]
        with pytest.raises(ConfigError, match="multiple of the 2 processes"):
            imagenet.train_batches(config(), 9, 0, 0, 0, 2)
    labels = [np.concatenate([b["labels"] for b in batches]) for batches in streams]
    assert all(b["images"].shape == (4, SIZE, SIZE, 3) for batches in streams for b in batches)
    assert len(set(labels[0])) == len(set(labels[1])) == NUM_TRAIN // 2  # one epoch each
    assert not set(labels[0]) & set(labels[1])
    assert set(labels[0]) | set(labels[1]) == set(range(NUM_TRAIN))


def test_pca_noise_shifts_every_pixel_by_one_rgb_vector():
    image = tf.random.stateless_uniform([8, 8, 3], [0, 0])
    shifts = []
    for i in range(200):
        shift = (imagenet_ops.pca_noise(image, 0.1, tf.constant([7, i])) - image).numpy()
        np.testing.assert_allclose(shift, np.broadcast_to(shift[0, 0], shift.shape), atol=1e-6)
        shifts.append(shift[0, 0])
    # Recover the alphas: shift = eigvec @ (alpha * eigval), alpha ~ N(0, 0.1).
    eigvec, eigval = np.array(imagenet_ops.PCA_EIGVEC), imagenet_ops.PCA_EIGVAL
    alphas = np.linalg.solve(eigvec, np.array(shifts).T).T / eigval
    np.testing.assert_allclose(alphas.std(axis=0), 0.1, rtol=0.25)
    assert abs(alphas.mean()) < 0.03


def test_scale_jitter_draws_varying_shorter_sides():
    image = tf.zeros([40, 60, 3], tf.uint8)
    draws = [imagenet_ops.scale_jitter(image, (36, 48), tf.constant([3, i])) for i in range(30)]
    shapes = {tuple(resized.shape) for resized in draws}
    shorter = {shape[0] for shape in shapes}
    assert shorter <= set(range(36, 49)) and len(shorter) >= 6
    assert all(shape[1] == round(shape[0] * 1.5) and shape[2] == 3 for shape in shapes)
    assert tuple(imagenet_ops.resize_shorter_side(image, 256).shape) == (256, 384, 3)
    assert tuple(imagenet_ops.resize_shorter_side(tf.zeros([61, 40, 3]), 36).shape) == (55, 36, 3)


def test_inception_crop_samples_8_to_100_percent_at_3_4_to_4_3_aspect():
    pixels = np.random.default_rng(0).integers(0, 256, (60, 80, 3), np.uint8)
    png, jpeg = tf.io.encode_png(pixels), tf.io.encode_jpeg(pixels)
    areas = []
    for i in range(30):
        seed = tf.constant([5, i])
        crop = imagenet_ops.inception_crop(jpeg, (0.08, 1.0), (3 / 4, 4 / 3), seed)
        same_window = imagenet_ops.inception_crop(png, (0.08, 1.0), (3 / 4, 4 / 3), seed)
        assert crop.shape == same_window.shape  # decode_and_crop_jpeg and full decode agree
        height, width, _ = crop.shape
        areas.append(height * width / (60 * 80))
        assert 3 / 4 - 0.1 < width / height < 4 / 3 + 0.1
    assert 0.08 - 0.01 <= min(areas) and max(areas) <= 1 and np.std(areas) > 0.1


def test_grayscale_and_cmyk_jpegs_decode_to_rgb():
    image_module = pytest.importorskip("PIL.Image")
    for mode, colour, rgb in (("L", 77, [77, 77, 77]), ("CMYK", (0, 255, 255, 0), [255, 0, 0])):
        buffer = io.BytesIO()
        image_module.new(mode, (12, 8), colour).save(buffer, "JPEG")
        decoded = imagenet_ops.decode(tf.constant(buffer.getvalue())).numpy()
        assert decoded.shape == (8, 12, 3)
        np.testing.assert_allclose(decoded[4, 6], rgb, atol=3)


def test_config_errors_name_the_known_values():
    with pytest.raises(ConfigError, match="known: imagenet2012, imagenette"):
        imagenet.settings(config(dataset="cifar10"))
    with pytest.raises(ConfigError, match="known: alexnet, vgg, resnet, inception"):
        imagenet.settings(config(augment="lenet"))
    with pytest.raises(ConfigError, match="known: center, ten_crop"):
        imagenet.settings(config(crop="five_crop"))
    with pytest.raises(ConfigError, match="known: standardize, subtract_mean"):
        imagenet.settings(config(normalize="per_pixel"))
    bad = config("vgg")
    bad.augment.scale_range = (16, 48)
    with pytest.raises(ConfigError, match="scale_range"):
        imagenet.settings(bad)
    with pytest.raises(ConfigError, match="known: train, validation"):
        imagenet.num_examples(config(), "test")
    with pytest.raises(ConfigError, match="no field augment.name"):
        imagenet.settings(ml_collections.ConfigDict({"dataset": {"name": "imagenet2012"}}))
    defaults = imagenet.settings(_imagenet.base("resnet50", None))
    assert (defaults.augment, defaults.image_size, defaults.scale_range, defaults.eval_resize) == (
        "resnet", 224, (256, 480), 256,
    )
    assert imagenet.settings(_imagenet.alexnet()).image_size == 227


def test_imagenet_without_the_manual_download_says_where_to_put_it(tmp_path):
    c = config(dataset="imagenet2012")
    c.dataset.data_dir = str(tmp_path)
    manual = (
        f"ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar .* in {tmp_path}/downloads/manual"
    )
    with pytest.raises(DataError, match=manual):
        imagenet.train_batches(c, 8, seed=0)
    c.dataset.manual_dir = str(tmp_path / "ilsvrc")
    with pytest.raises(DataError, match=f"in {tmp_path}/ilsvrc"):
        imagenet.num_examples(c, "validation")


def write_manual_download(folder, synsets):
    """Tiny ILSVRC2012_img_{train,val}.tar: one JPEG per synset, 10 validation JPEGs."""
    rng = np.random.default_rng(0)

    def add(tar, name, blob):
        info = tarfile.TarInfo(name)
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))

    def jpeg(height, width):
        return tf.io.encode_jpeg(rng.integers(0, 256, (height, width, 3), np.uint8)).numpy()

    with tarfile.open(folder / "ILSVRC2012_img_train.tar", "w") as train:
        for i, synset in enumerate(synsets):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as images:
                add(images, f"{synset}_{i}.JPEG", jpeg(30 + i, 50 - i))
            add(train, f"{synset}.tar", inner.getvalue())
    with tarfile.open(folder / "ILSVRC2012_img_val.tar", "w") as val:
        for i in range(1, NUM_VAL + 1):
            add(val, f"ILSVRC2012_val_{i:08d}.JPEG", jpeg(45, 40))


def test_imagenet2012_built_from_the_manual_download_streams_in_shards(tmp_path):
    """No mock: tfds builds the records from manual_dir, the pipeline reads them back."""
    synsets = tfds.builder("imagenet2012").info.features["label"].names[:NUM_TRAIN]
    (tmp_path / "manual").mkdir()
    write_manual_download(tmp_path / "manual", synsets)
    c = config(dataset="imagenet2012")
    c.dataset.data_dir, c.dataset.manual_dir = str(tmp_path / "tfds"), str(tmp_path / "manual")
    assert imagenet.num_examples(c, "train") == NUM_TRAIN
    assert imagenet.num_examples(c, "validation") == NUM_VAL
    streams = [take(imagenet.train_batches(c, 8, 0, 0, i, 2), 5) for i in range(2)]
    resumed = next(imagenet.train_batches(c, 8, 0, 4, 1, 2))
    evals = list(imagenet.eval_batches(c, "validation", 4))
    epochs = [{int(x) for b in batches[:3] for x in b["labels"]} for batches in streams]
    assert len(epochs[0]) == len(epochs[1]) == NUM_TRAIN // 2 and not epochs[0] & epochs[1]
    assert epochs[0] | epochs[1] == set(range(NUM_TRAIN))  # synsets[:24] are labels 0..23
    np.testing.assert_array_equal(resumed["images"], streams[1][4]["images"])
    assert [b["mask"].sum() for b in evals] == [4, 4, 2]


def test_imagenette_offline_fails_in_seconds_with_advice(tmp_path, monkeypatch):
    tries = []

    def unreachable(address, timeout=None, *args, **kwargs):
        tries.append((address, timeout))
        raise OSError("Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    c = config()
    c.dataset.data_dir = str(tmp_path)
    advice = "cannot be downloaded .*s3.amazonaws.com.*tfds build imagenette/full-size-v2"
    with pytest.raises(DataError, match=advice):
        imagenet.train_batches(c, 8, seed=0)
    # One connection attempt to the one server, with a timeout of seconds: no retries.
    assert [(host, timeout) for (host, _), timeout in tries] == [("s3.amazonaws.com", 5)]
    c.dataset.download = False
    with pytest.raises(DataError, match="not prepared .*tfds build imagenette/full-size-v2"):
        imagenet.eval_batches(c, "validation", 8)
