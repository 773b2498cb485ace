"""The CIFAR-10 recipe of He et al. 2015, section 4.2, shared by the cifar_* configs.

"We use a weight decay of 0.0001 and momentum of 0.9, and adopt the weight initialization
in [13] and BN [16] but with no dropout. These models are trained with a mini-batch size
of 128 on two GPUs. We start with a learning rate of 0.1, divide it by 10 at 32k and 48k
iterations, and terminate training at 64k iterations, which is determined on a 45k/5k
train/val split." ResNet-110 warms up at lr 0.01 until the training error is below 80%
(about 400 iterations); this recipe does so for every net of 110 layers or more.

Arguments (`--config=NAME:ARG`):
  smoke  a few CPU minutes: 100 iterations at batch 64 (lr 0.01 for 20 iterations, then 0.1,
         divided at 50 and 75), evaluation on 1,000 examples every 50 iterations. It checks
         the machinery, not the paper.
"""

import ml_collections

from cnn_jax.errors import ConfigError
from cnn_jax.models import cifar_resnet
from cnn_jax.training import initialize
from experiments.configs._optimizer import he_sgd

ARGS = ("smoke",)


def get_config(model_name: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """The paper's recipe for `model_name` (a cifar_resnet* or cifar_plain* net)."""
    if arg and arg not in ARGS:
        raise ConfigError(f"Unknown config argument {arg!r}; known: {', '.join(ARGS)}.")
    depth = cifar_resnet.from_name(model_name).keywords["depth"]
    config = ml_collections.ConfigDict()
    config.name = f"{model_name}_{arg}" if arg else model_name
    config.seed = 0

    config.model = ml_collections.ConfigDict()
    config.model.name = model_name
    config.model.width = 16  # filters of the first stage; 16 in the paper
    config.model.shortcut = (
        "A"  # A: zero-padded identity (CIFAR); B: projections where shapes change
    )
    config.model.dtype = "auto"  # bfloat16 on TPUs, float32 elsewhere; params stay float32
    # One nn.scan over the identical blocks of each stage: compile time flat in depth. Up to
    # 56 layers the unrolled net compiles in seconds and runs faster on CPUs
    # (docs/cpu_performance.md), so only deeper nets are scanned.
    config.model.scan = depth > 56
    config.model.remat = False  # with scan: recompute activations in the backward pass
    # BN statistics per group of this many examples (0: the global batch). The paper's
    # 2 GPUs x 64 is 64; the default is the same on every device count.
    config.model.bn_group_size = 0

    config.dataset = ml_collections.ConfigDict()
    config.dataset.name = "cifar10"
    config.dataset.source = "tfds"  # or "files": the distribution files in dataset.data_dir
    config.dataset.data_dir = ""  # tfds: its data_dir ("" = tfds's default); files: the folder
    config.dataset.download = True  # tfds only: download and prepare if missing
    config.dataset.val_split = 0  # training examples held out for validation (paper: 5000)
    config.dataset.classes = ()  # the labels kept, renumbered 0, 1, ... (empty = all)
    config.dataset.train_examples = 0  # the first N training examples only (0 = all)

    config.augment = ml_collections.ConfigDict()
    config.augment.crop_padding = 4
    config.augment.flip = True

    config.train = ml_collections.ConfigDict()
    config.train.batch_size = 128
    config.train.steps = 64_000
    config.train.log_every_steps = 100
    config.train.diagnostics_every_steps = 500  # gradient norms per stage (diagnostics.jsonl)
    config.train.ema_decay = 0.0  # > 0: evaluate a moving average of the parameters (0 = off)

    config.optimizer = he_sgd()

    config.schedule = ml_collections.ConfigDict()
    config.schedule.boundaries = (32_000, 48_000)
    config.schedule.factor = 0.1
    config.schedule.warmup_lr = 0.01
    config.schedule.warmup_steps = 400 if depth >= 110 else 0
    config.schedule.warmup_until_error = 80.0

    config.eval = ml_collections.ConfigDict()
    config.eval.every_steps = 1_000
    config.eval.batch_size = 1_000
    config.eval.max_examples = 0  # 0 = the whole split

    config.init = initialize.section()  # start from another run's checkpoint (see there)

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.every_steps = 4_000
    config.checkpoint.keep = 3

    if arg == "smoke":
        config.train.batch_size = 64
        config.train.steps = 100
        config.train.log_every_steps = 10
        config.train.diagnostics_every_steps = 25
        config.schedule.boundaries = (50, 75)
        # Lr 0.1 from the first step is chaotic: a 1e-7 change of the weights moves the loss
        # 20 steps later by 1e-1. Warming up at 0.01 for the first 20 steps keeps a short
        # run reproducible across device counts (float sums in another order).
        config.schedule.warmup_steps = 20
        config.schedule.warmup_until_error = 0.0
        config.eval.every_steps = 50
        config.eval.batch_size = 200
        config.eval.max_examples = 1_000
        config.checkpoint.every_steps = 50
    return config
