"""LeNet-5 on MNIST (LeCun, Bottou, Bengio & Haffner 1998, section III.B and Appendix C).

    python -m experiments.train --config=mnist_lenet5
    python -m experiments.train --config=mnist_lenet5 --config.dataset.name=fashion_mnist \\
      --config.dataset.source=files --config.dataset.data_dir=/usr/share/datasets/fashion-mnist

Paper: 0.95% test error on MNIST without distortions, 0.8% with them (section III.B).

The paper's protocol: 20 passes through the 60,000 training images, one update per image
(online learning), with the global step size eps = 0.0005 for the first 2 passes, 0.0002 for
the next 3, 0.0001 for the next 3, 0.00005 for the next 4 and 0.00001 thereafter; no
momentum, no weight decay, no distortions; Levenberg-Marquardt's mu = 0.02.

Not the paper: plain SGD in place of its stochastic diagonal Levenberg-Marquardt method,
which gives each parameter k the step eps / (mu + h_kk), with h_kk an estimate of the
diagonal of the Gauss-Newton Hessian re-estimated on 500 images before each pass
(Appendix C). Plain SGD has one step for all parameters, so every rate of the schedule is
multiplied by one factor, 10 (0.005 for the first 2 passes ... 0.0001 at the end): the step
Levenberg-Marquardt takes where h_kk = 4 mu. Its largest step, eps / mu = 50 eps (h_kk near
0), is too large for every parameter at once: with it the training loss on Fashion-MNIST
rose from 0.83 after 18,000 updates to 1.64 after 60,000, while 10 eps trains steadily.
Also not the paper: a linear output layer and the softmax cross-entropy instead of its RBF
units and MAP criterion (see `cnn_jax/models/lenet.py`), and inputs scaled to [0, 1] minus
the training set's per-pixel mean instead of background -0.1 and foreground 1.175. The
28x28 images are centred in 32x32 as in the paper.

Arguments (`--config=NAME:ARG`):
  smoke  seconds on a CPU: the same schedule over 20 passes of 12 images (240 updates).
"""

import itertools

import ml_collections

from cnn_jax.errors import ConfigError

TRAIN_IMAGES = 60_000
# Section III.B: (passes, step size) in the order the schedule uses them.
PAPER_SCHEDULE = ((2, 0.0005), (3, 0.0002), (3, 0.0001), (4, 0.00005), (8, 0.00001))
STEP_FACTOR = 10  # plain SGD's rate / the paper's eps (see the module docstring)
BATCH_SIZE = 1  # online, as in the paper


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in (None, "smoke"):
        raise ConfigError(f"Unknown config argument {arg!r}; known: smoke.")
    steps_per_pass = (12 if arg == "smoke" else TRAIN_IMAGES) // BATCH_SIZE
    passes = [p for p, _ in PAPER_SCHEDULE]
    rates = [STEP_FACTOR * eps for _, eps in PAPER_SCHEDULE]

    config = ml_collections.ConfigDict()
    config.name = f"mnist_lenet5_{arg}" if arg else "mnist_lenet5"
    config.seed = 0
    config.model = ml_collections.ConfigDict({"name": "lenet5", "dtype": "auto"})

    config.dataset = ml_collections.ConfigDict()
    config.dataset.name = "mnist"  # or fashion_mnist
    config.dataset.source = "tfds"  # or "files": the IDX files in dataset.data_dir
    config.dataset.data_dir = ""
    config.dataset.download = True
    config.dataset.val_split = 0

    config.augment = ml_collections.ConfigDict({"crop_padding": 0, "flip": False})

    config.train = ml_collections.ConfigDict()
    config.train.batch_size = BATCH_SIZE
    config.train.steps = sum(passes) * steps_per_pass  # 20 passes
    config.train.log_every_steps = steps_per_pass // 10
    config.train.ema_decay = 0.0

    config.optimizer = ml_collections.ConfigDict(
        {"name": "sgd", "lr": rates[0], "momentum": 0.0, "weight_decay": 0.0}
    )
    config.schedule = ml_collections.ConfigDict()
    ends = [sum(passes[: i + 1]) * steps_per_pass for i in range(len(passes))]
    config.schedule.boundaries = tuple(ends[:-1])  # the rate changes after passes 2, 5, 8, 12
    config.schedule.factors = tuple(b / a for a, b in itertools.pairwise(rates))
    config.schedule.factor = 1.0  # unused: schedule.factors gives one per boundary
    config.schedule.warmup_lr = 0.0
    config.schedule.warmup_steps = 0
    config.schedule.warmup_until_error = 0.0

    config.eval = ml_collections.ConfigDict()
    config.eval.every_steps = steps_per_pass  # after every pass, as Fig. 5 plots
    config.eval.batch_size = 1_000
    config.eval.max_examples = 0

    config.checkpoint = ml_collections.ConfigDict({"every_steps": steps_per_pass, "keep": 3})
    if arg == "smoke":
        config.train.log_every_steps = steps_per_pass
        config.eval.every_steps = config.checkpoint.every_steps = 10 * steps_per_pass
        config.eval.batch_size, config.eval.max_examples = 100, 500
    return config
