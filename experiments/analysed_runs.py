"""The flags of the commands that analyse trained runs (lesion, landscape)."""

from absl import flags

WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir of a cifar_* net.")
SWEEP_DIR = flags.DEFINE_string("sweep_dir", None, "A sweep directory: every finished run in it.")
NETS = flags.DEFINE_list("nets", None, "With --sweep_dir: only these nets (e.g. cifar_resnet56).")
STEP = flags.DEFINE_integer("step", None, "The checkpoint's step (default: the latest).")
PARALLEL = flags.DEFINE_integer(
    "parallel",
    1,
    "Variants of the net (lesions, grid points) vmapped at once: 1 on a CPU, more "
    "on a large accelerator. One at a time, a lesion skips the blocks it deletes; vmapped, "
    "it computes and masks them.",
)


def workdirs() -> list:
    """The workdirs the flags name (one error sentence when they name none)."""
    from cnn_jax.analysis import trained

    return trained.workdirs(WORKDIR.value, SWEEP_DIR.value, NETS.value)
