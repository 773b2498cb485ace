"""ImageNet recipes of the papers, shared by the imagenet_* configs.

Each recipe is the paper's training setup (batch, optimizer, schedule, augmentation, test
crops) as far as the paper states it; where it does not, the choice and its source is noted.
Learning-rate drops "when the validation error stopped improving" are fixed iterations here,
so that runs are reproducible. An epoch of ImageNet at batch 256 is 5,005 iterations.

Data: `imagenet2012` from tfds, whose archives (ILSVRC2012_img_train.tar,
ILSVRC2012_img_val.tar) must be downloaded by hand into dataset.manual_dir; or `imagenette`
(10 classes, downloadable) with `--config.dataset.name=imagenette`.

Arguments (`--config=NAME:ARG`):
  smoke  a few CPU minutes on small images: 6 iterations at batch 8 (the learning rate
         scaled linearly to it) and 64x64 pixels (AlexNet 67x67, GoogLeNet 96x96, the
         Inception nets 75x75), evaluation on 16 validation images. Checks the machinery.
"""

import ml_collections

from cnn_jax.data import imagenet_ops
from cnn_jax.errors import ConfigError
from cnn_jax.training import initialize
from experiments.configs._optimizer import he_sgd

ARGS = ("smoke",)
EPOCH = 5_005  # iterations per epoch of ImageNet's 1,281,167 training images at batch 256


def base(model_name: str, arg: str | None) -> ml_collections.ConfigDict:
    """Fields every ImageNet recipe sets; the recipes below fill in the numbers."""
    if arg and arg not in ARGS:
        raise ConfigError(f"Unknown config argument {arg!r}; known: {', '.join(ARGS)}.")
    config = ml_collections.ConfigDict()
    config.name = f"imagenet_{model_name}_{arg}" if arg else f"imagenet_{model_name}"
    config.seed = 0
    config.model = ml_collections.ConfigDict(
        {"name": model_name, "dtype": "auto", "bn_group_size": 0}
    )

    config.dataset = ml_collections.ConfigDict()
    config.dataset.name = "imagenet2012"
    config.dataset.tfds_name = ""  # tfds name/config ("" = the one of dataset.name)
    config.dataset.data_dir = ""  # tfds data_dir ("" = tfds's default)
    config.dataset.manual_dir = ""  # where the ILSVRC2012 archives are (imagenet2012 only)
    config.dataset.download = True
    config.dataset.shuffle_buffer = 10_000  # raw records in each process's shuffle buffer

    config.augment = ml_collections.ConfigDict()
    config.augment.name = "resnet"
    config.augment.image_size = 224
    config.augment.resize = 256  # shorter side and square of the image, for "alexnet"
    config.augment.scale_range = (256, 480)  # shorter side, for "resnet" and "vgg"
    config.augment.area_range = (0.08, 1.0)  # for "inception"
    config.augment.aspect_range = (3 / 4, 4 / 3)  # for "inception"
    config.augment.pca_noise = 0.1  # std of AlexNet's PCA colour noise; 0 turns it off
    config.augment.flip = True
    config.augment.normalize = "standardize"  # or "subtract_mean": 0-255 pixels minus the mean
    config.augment.mean_rgb = imagenet_ops.MEAN_RGB  # ImageNet's training-set statistics
    config.augment.stddev_rgb = imagenet_ops.STDDEV_RGB

    config.train = ml_collections.ConfigDict()
    config.train.batch_size = 256
    config.train.steps = 120 * EPOCH
    config.train.log_every_steps = 100
    config.train.aux_loss_weight = 0.0
    config.train.ema_decay = 0.0  # > 0: evaluate a moving average of the parameters (0 = off)

    config.optimizer = he_sgd()

    config.schedule = ml_collections.ConfigDict()
    config.schedule.name = "piecewise"
    config.schedule.boundaries = (30 * EPOCH, 60 * EPOCH, 90 * EPOCH)
    config.schedule.factor = 0.1
    config.schedule.every_steps = EPOCH  # for schedule.name = "exponential"
    config.schedule.warmup_lr = 0.0
    config.schedule.warmup_steps = 0
    config.schedule.warmup_until_error = 0.0

    config.eval = ml_collections.ConfigDict()
    config.eval.every_steps = 5 * EPOCH
    config.eval.batch_size = 200
    config.eval.crop = "center"  # or "ten_crop": 4 corners + centre and their flips
    config.eval.resize = 256  # shorter side before cropping
    config.eval.max_examples = 0  # 0 = all 50,000 validation images

    config.init = initialize.section()  # start from another run's checkpoint (see there)

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.every_steps = EPOCH
    config.checkpoint.keep = 3
    return config


def smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A few CPU minutes on small images (see the module docstring)."""
    # The smallest inputs the nets accept: GoogLeNet's auxiliary heads need a 5x5 map at 4a,
    # AlexNet's pools a 3x3 conv5 map (67 -> 15 -> 7 -> 3 -> 1).
    smallest = {"inception": 75, "googlenet": 96, "alexnet": 67}
    size = smallest.get(config.model.name.split("_")[0], 64)
    config.augment.image_size = size
    config.augment.scale_range = (size, size + size // 2)
    config.eval.resize = size + size // 7
    config.optimizer.lr *= 8 / config.train.batch_size  # the linear scaling rule for batch 8
    config.train.batch_size = 8
    config.train.steps = 6
    config.train.log_every_steps = 2
    config.schedule.boundaries = (4,)
    config.schedule.every_steps = 2
    config.eval.every_steps = 3
    config.eval.batch_size = 8
    config.eval.max_examples = 16
    config.checkpoint.every_steps = 3
    return config


def alexnet(arg: str | None = None) -> ml_collections.ConfigDict:
    """Krizhevsky et al. 2012, section 5: batch 128, momentum 0.9, weight decay 5e-4, lr 0.01
    divided by 10 three times, about 90 epochs; 224 (227) crops of 256x256 images, flips, PCA
    colour noise; test on the 10 crops of the 256x256 image. Inputs are what the paper fed
    (section 2): 0-255 pixels minus the training set's mean, per channel here (the paper's is a
    mean image, per pixel), the scale its N(0, 0.01) weights and biases of 1 were set for."""
    config = base("alexnet", arg)
    config.augment.name, config.augment.image_size = "alexnet", 227
    config.augment.normalize = "subtract_mean"
    config.train.batch_size = 128
    epoch = 2 * EPOCH
    config.train.steps = 90 * epoch
    config.optimizer.lr, config.optimizer.weight_decay = 0.01, 5e-4
    config.schedule.boundaries = (30 * epoch, 60 * epoch, 80 * epoch)
    config.eval.crop = "ten_crop"
    return smoke(config) if arg == "smoke" else config


# Section 3.1: the deeper nets start from "the first four convolutional layers and the last three
# fully-connected layers" of net A; A's conv1_1, conv2_1, conv3_1 and conv3_2 fit the layers of
# the same names in B-E, whose other layers start at random.
VGG_FROM_A = ("conv1_1", "conv2_1", "conv3_1", "conv3_2", "fc6", "fc7", "fc8")


def vgg(
    model_name: str,
    arg: str | None = None,
    initialization: str = "glorot",
    scale_range: tuple[int, int] = (256, 512),
) -> ml_collections.ConfigDict:
    """Simonyan & Zisserman 2014, section 3.1: batch 256, momentum 0.9, weight decay 5e-4,
    lr 0.01 divided by 10 three times, 370k iterations (74 epochs); the training scale S drawn
    from `scale_range` (scale jittering over [256, 512], or a fixed S = 256), random 224 crops,
    flips, RGB shift. Weights from Glorot initialization (found after submission to train every
    net from scratch) or, for net A, "gaussian" N(0, 0.01^2); biases zero. Inputs are 0-255
    pixels minus the training set's mean RGB value (section 2.1). Nets deeper than A copy
    `VGG_FROM_A` from the run `init.workdir` names, if one is given. Tested here at Q = 256 on
    the centre crop; `experiments.evaluate --protocol=dense|multi_crop` runs the paper's dense
    and multi-crop evaluation (section 3.2)."""
    config = base(model_name, arg)
    config.model.initialization = initialization
    if model_name not in ("vgg11", "vgg_a", "vgg_a_lrn"):
        config.init.include = VGG_FROM_A
    config.augment.name, config.augment.scale_range = "vgg", scale_range
    config.augment.normalize = "subtract_mean"
    config.train.steps = 370_000
    config.optimizer.lr, config.optimizer.weight_decay = 0.01, 5e-4
    config.schedule.boundaries = (150_000, 260_000, 330_000)
    return smoke(config) if arg == "smoke" else config


def googlenet(arg: str | None = None) -> ml_collections.ConfigDict:
    """Szegedy et al. 2014, section 6: momentum 0.9, the learning rate decreased by 4% every 8
    epochs, patches of 8%-100% of the image area with aspect ratio in [3/4, 4/3], auxiliary
    losses weighted 0.3. The paper gives neither the initial rate nor the batch; BVLC's
    replication used 0.01 at batch 32, scaled here to 0.08 at batch 256, and weight decay 2e-4.
    "Polyak averaging was used to create the final model used at inference time": here an
    exponential moving average of the parameters with decay 0.9999 (about the last 10,000
    iterations, 2 epochs; the paper gives no window), which evaluation uses."""
    config = base("googlenet", arg)
    config.augment.name, config.augment.pca_noise = "inception", 0.0
    config.train.aux_loss_weight = 0.3
    config.train.ema_decay = 0.9999
    config.train.steps = 90 * EPOCH
    config.optimizer.lr, config.optimizer.weight_decay = 0.08, 2e-4
    config.schedule.name, config.schedule.factor = "exponential", 0.96
    config.schedule.every_steps = 8 * EPOCH
    return smoke(config) if arg == "smoke" else config


# Section 4.1: Table 2's ResNet-18/34 use option A ("no extra parameter compared to the plain
# counterparts"); the bottleneck nets (Table 3, 50/101/152) use option B.
RESNET_SHORTCUTS = {
    "resnet18": "A", "resnet34": "A", "resnet50": "B", "resnet101": "B", "resnet152": "B"
}


def resnet(model_name: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """He et al. 2015, section 3.4: batch 256, momentum 0.9, weight decay 1e-4, lr 0.1 divided
    by 10 when the error plateaus (here at epochs 30, 60, 90), 60e4 iterations; the shorter side
    resized to [256, 480], random 224 crops, flips, PCA colour noise; 10-crop testing (Table 2).
    ResNets get the paper's shortcut option (`RESNET_SHORTCUTS`), which
    `--config.model.shortcut` overrides; plain nets have none."""
    config = base(model_name, arg)
    if model_name in RESNET_SHORTCUTS:
        config.model.shortcut = RESNET_SHORTCUTS[model_name]
    config.train.steps = 600_000
    config.eval.crop = "ten_crop"
    return smoke(config) if arg == "smoke" else config


def inception_v4(arg: str | None = None) -> ml_collections.ConfigDict:
    """Szegedy et al. 2016, section 4: RMSProp with decay 0.9 and epsilon 1.0, lr 0.045
    multiplied by 0.94 every 2 epochs, 299x299 inputs with Inception-style crops. The paper
    trained on 20 replicas (one GPU each) and gives no batch; batch 256 and TF-slim's weight
    decay 4e-5 here."""
    config = base("inception_v4", arg)
    # "Model evaluations are performed using a running average of the parameters computed
    # over time": an exponential moving average, with TF-slim's decay.
    config.train.ema_decay = 0.9999
    config.augment.name, config.augment.image_size = "inception", 299
    config.augment.pca_noise = 0.0
    config.eval.resize = 342  # 299 / 0.875
    config.train.steps = 160 * EPOCH
    config.optimizer.name = "rmsprop"
    config.optimizer.lr, config.optimizer.weight_decay = 0.045, 4e-5
    config.optimizer.decay, config.optimizer.epsilon = 0.9, 1.0
    config.schedule.name, config.schedule.factor = "exponential", 0.94
    config.schedule.every_steps = 2 * EPOCH
    return smoke(config) if arg == "smoke" else config
