"""tf.data preprocessing ops of the streamed ImageNet-scale data sets, one example at a time.

`cnn_jax.data.imagenet` reads the records and maps `train_preprocess` / `eval_preprocess` over
them; every op here also works, and is tested, on its own tensors.

Training augmentations (`augment.name`), each as its paper describes it:

  alexnet    Krizhevsky et al. 2012: "we first rescaled the image such that the shorter side
             was of length 256, and then cropped out the central 256x256 patch"; then
             "random 224x224 patches (and their horizontal reflections)" (227 here, the size
             the layer arithmetic needs), and PCA colour noise: "to each RGB image pixel we
             add [p1, p2, p3][a1 l1, a2 l2, a3 l3]^T ... each ai is drawn once per image from
             a Gaussian with mean zero and standard deviation 0.1".
  vgg        Simonyan & Zisserman 2014, section 3.1, scale jittering: "each training image
             is individually rescaled by randomly sampling S from a certain range
             [Smin, Smax] (we used Smin = 256 and Smax = 512)", random 224x224 crops,
             "random horizontal flipping and random RGB colour shift" (the PCA noise above).
  resnet     He et al. 2015, section 3.4: "The image is resized with its shorter side
             randomly sampled in [256, 480] for scale augmentation. A 224x224 crop is
             randomly sampled from an image or its horizontal flip ... The standard color
             augmentation in [21] is used."
  inception  Szegedy et al. 2014, GoogLeNet: "sampling of various sized patches of the image
             whose size is distributed evenly between 8% and 100% of the image area with
             aspect ratio constrained to the interval [3/4, 4/3]", resized to image_size,
             and flips.

All of them end with a per-channel normalization (`augment.normalize`), in training and
evaluation alike:

  standardize    the [0, 1] RGB image minus ImageNet's training-set mean, divided by its
                 standard deviation: inputs of unit scale (torchvision's convention).
  subtract_mean  0-255 pixel values minus the training set's mean RGB value: what AlexNet
                 (section 2: "subtracting the mean activity over the training set from each
                 pixel", a mean image, per pixel; per channel here) and VGG (section 2.1: "the
                 mean RGB value, computed on the training set") fed their nets, about 57x
                 the scale of standardized inputs, and what their initializations suit.

Evaluation (`eval.crop`) resizes the shorter side to `eval.resize` and takes the central crop
("center") or AlexNet's ten views ("ten_crop": the four corners and the centre of the central
resize x resize square, and their mirror images, the "standard 10-crop testing" of VGG and
ResNet).
"""

from typing import TYPE_CHECKING

import numpy as np

from cnn_jax.data import tfds_source
from cnn_jax.errors import ConfigError

if TYPE_CHECKING:
    from cnn_jax.data.imagenet import Settings

NORMALIZATIONS = ("standardize", "subtract_mean")
NET_STRIDE = 32  # the nets' total stride: dense evaluation rounds image sides to it

# Per-channel statistics of ImageNet's [0, 1] RGB training images.
MEAN_RGB = (0.485, 0.456, 0.406)
STDDEV_RGB = (0.229, 0.224, 0.225)
# Principal components of the [0, 1] RGB pixel covariance of ImageNet: eigenvalues, and
# eigenvectors as the COLUMNS of PCA_EIGVEC (the values fb.resnet.torch published).
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)

_TF = None


def tensorflow():
    """TensorFlow, imported late (it is slow to load) and kept off the accelerators."""
    global _TF
    if _TF is None:
        tf = tfds_source.require_tensorflow("streaming ImageNet-style data sets")
        try:  # tf.data only needs the CPU; leave GPU memory to JAX.
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # already initialized by someone else: leave it
            pass
        _TF = tf
    return _TF


def decode(encoded):
    """JPEG/PNG/GIF/BMP bytes -> uint8 [H, W, 3]; grayscale and CMYK images become RGB."""
    tf = tensorflow()
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize_shorter_side(image, size):
    """Bilinear resize so that the shorter side is `size` (a Python or tensor int); float32."""
    tf = tensorflow()
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
    size = tf.cast(size, tf.int32)
    scale = tf.cast(size, tf.float64) / tf.minimum(height, width)
    new_height = tf.maximum(size, tf.cast(tf.round(height * scale), tf.int32))
    new_width = tf.maximum(size, tf.cast(tf.round(width * scale), tf.int32))
    return tf.image.resize(image, tf.stack([new_height, new_width]), method="bilinear")


def scale_jitter(image, scale_range: tuple[int, int], seed):
    """VGG's / ResNet's scale augmentation: shorter side resized to S ~ U{low, ..., high}."""
    tf = tensorflow()
    low, high = scale_range
    size = tf.random.stateless_uniform([], seed, minval=low, maxval=high + 1, dtype=tf.int32)
    return resize_shorter_side(image, size)


def center_crop(image, size: int):
    """The central size x size window of an image at least that big."""
    tf = tensorflow()
    shape = tf.shape(image)
    top, left = (shape[0] - size) // 2, (shape[1] - size) // 2
    return tf.slice(image, tf.stack([top, left, 0]), [size, size, 3])


def random_crop(image, size: int, seed):
    """A uniformly placed size x size window."""
    return tensorflow().image.stateless_random_crop(image, [size, size, 3], seed)


def inception_crop(
    encoded, area_range: tuple[float, float], aspect_range: tuple[float, float], seed
):
    """GoogLeNet's random patch of the encoded image, uint8 [h, w, 3], decoded crop-only for JPEGs.

    The patch covers area_range of the image area with aspect ratio (width / height) in
    aspect_range; if 10 draws find none that fits, the whole image.
    """
    tf = tensorflow()

    def window(shape):
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape,
            bounding_boxes=tf.zeros([0, 0, 4], tf.float32),
            seed=seed,
            min_object_covered=0.0,
            aspect_ratio_range=aspect_range,
            area_range=area_range,
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        return begin, size

    def from_jpeg():
        begin, size = window(tf.io.extract_jpeg_shape(encoded))
        crop = tf.stack([begin[0], begin[1], size[0], size[1]])
        return tf.image.decode_and_crop_jpeg(encoded, crop, channels=3)

    def from_other():
        image = decode(encoded)
        begin, size = window(tf.shape(image))
        return tf.slice(image, begin, size)

    image = tf.cond(tf.io.is_jpeg(encoded), from_jpeg, from_other)
    image.set_shape([None, None, 3])
    return image


def pca_noise(image, stddev: float, seed):
    """AlexNet's colour augmentation on a [0, 1] RGB image: one RGB shift for the whole image,
    PCA_EIGVEC @ (alpha * PCA_EIGVAL) with alpha ~ N(0, stddev^2) per component."""
    tf = tensorflow()
    alpha = tf.random.stateless_normal([3], seed, stddev=stddev)
    eigvec, eigval = tf.constant(PCA_EIGVEC, tf.float32), tf.constant(PCA_EIGVAL, tf.float32)
    shift = tf.linalg.matvec(eigvec, alpha * eigval)
    return image + shift


def normalize(image, method: str = "standardize", mean=MEAN_RGB, stddev=STDDEV_RGB):
    """[0, 1] RGB (a tf or numpy array) -> the net's input, per channel (see the module
    docstring): "standardize" divides by the standard deviation after subtracting the mean
    (ImageNet's, or those given: `augment.mean_rgb` / `augment.stddev_rgb`, e.g. 0.5 for
    weights trained on [-1, 1] inputs); "subtract_mean" gives 0-255 pixel values minus the
    mean."""
    if method not in NORMALIZATIONS:
        raise ConfigError(f"Unknown normalization {method!r}; known: {', '.join(NORMALIZATIONS)}.")
    centred = image - np.asarray(mean, np.float32)
    if method == "subtract_mean":
        return centred * np.float32(255.0)
    return centred / np.asarray(stddev, np.float32)


def ten_crop(image, size: int):
    """AlexNet's test views: the 4 corner and the centre size-crops of a square image, then
    their mirror images: [10, size, size, 3]."""
    tf = tensorflow()
    edge = tf.shape(image)[0] - size
    middle = edge // 2
    corners = [(0, 0), (0, edge), (edge, 0), (edge, edge), (middle, middle)]
    crops = tf.stack(
        [tf.slice(image, tf.stack([top, left, 0]), [size, size, 3]) for top, left in corners]
    )
    return tf.concat([crops, tf.reverse(crops, axis=[2])], axis=0)


def whole_image(encoded, scale: int):
    """Dense evaluation's input: the image resized to shorter side `scale`, its longer side to
    the nearest multiple of the nets' stride, 32 (an aspect change under 32 / (2 * scale),
    which keeps the shapes to compile few), in [0, 1]."""
    tf = tensorflow()
    image = decode(encoded)
    shape = tf.cast(tf.shape(image)[:2], tf.float64)
    longer = tf.reduce_max(shape) * scale / tf.reduce_min(shape)
    longer = tf.cast(tf.round(longer / NET_STRIDE), tf.int32)
    longer = tf.maximum(longer * NET_STRIDE, scale)
    size = tf.where(shape[0] <= shape[1], tf.stack([scale, longer]), tf.stack([longer, scale]))
    return tf.image.resize(image, size, method="bilinear") / 255.0


def grid_crops(image, size: int, grid: int = 5):
    """VGG's multi-crop views (section 3.2): size-crops on a regular grid x grid over the
    image, corners included, and their mirror images: [2 * grid**2, size, size, 3]."""
    tf = tensorflow()
    shape = tf.shape(image)

    def offsets(extent):
        return [(extent - size) * i // (grid - 1) for i in range(grid)]

    crops = tf.stack([tf.slice(image, tf.stack([top, left, 0]), [size, size, 3])
                      for top in offsets(shape[0]) for left in offsets(shape[1])])
    return tf.concat([crops, tf.reverse(crops, axis=[2])], axis=0)


def train_preprocess(encoded, s: "Settings", seed):
    """Encoded image -> augmented, normalized float32 [S, S, 3]; all draws from `seed` ([2])."""
    tf = tensorflow()
    seeds = tf.random.experimental.stateless_split(seed, 4)
    scale_seed, crop_seed, flip_seed, color_seed = tf.unstack(seeds)
    size = s.image_size
    if s.augment == "inception":
        image = inception_crop(encoded, s.area_range, s.aspect_range, crop_seed)
        image = tf.image.resize(image, [size, size], method="bilinear")
    else:
        image = decode(encoded)
        if s.augment == "alexnet":
            image = center_crop(resize_shorter_side(image, s.resize), s.resize)
        else:
            image = scale_jitter(image, s.scale_range, scale_seed)
        image = random_crop(image, size, crop_seed)
    image = tf.cast(image, tf.float32) / 255.0
    if s.flip:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    if s.pca_noise > 0:
        image = pca_noise(image, s.pca_noise, color_seed)
    return tf.ensure_shape(normalize(image, s.normalize, s.mean_rgb, s.stddev_rgb), [size, size, 3])


def eval_preprocess(encoded, s: "Settings"):
    """Encoded image -> normalized float32 [S, S, 3] ("center") or [10, S, S, 3] ("ten_crop")."""
    tf = tensorflow()
    image = resize_shorter_side(decode(encoded), s.eval_resize) / 255.0
    if s.eval_crop == "center":
        view = normalize(center_crop(image, s.image_size), s.normalize, s.mean_rgb, s.stddev_rgb)
        return tf.ensure_shape(view, [s.image_size, s.image_size, 3])
    views = ten_crop(center_crop(image, s.eval_resize), s.image_size)
    views = normalize(views, s.normalize, s.mean_rgb, s.stddev_rgb)
    return tf.ensure_shape(views, [10, s.image_size, s.image_size, 3])
