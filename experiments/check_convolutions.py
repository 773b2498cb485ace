r"""Checks every convolution of the model zoo on this CPU against XLA's: forward pass, input
gradient and weight gradient, each call repeated.

    python -m experiments.check_convolutions [--repeats=10] [--models=cifar_resnet20,resnet50]

The CPU path (`cnn_jax.cpu.conv`) hands convolutions to oneDNN, whose kernels differ by
shape, instruction set and thread count; run this on a new machine before trusting it. The
convolutions are read off the jaxprs of the training forward pass of every model in
`cnn_jax.models.names()`: the CIFAR nets at the batch sizes and widths of their recipes, of the
README's Fashion-MNIST runs and of the tests (and their evaluation batches, forward only), the
ImageNet nets at their native input size with batch 2 and at their smoke configs' size, plus
odd shapes (1 to 5 channels, strided 1x1 kernels, asymmetric padding). It prints one line per
mismatch and a summary; the exit code is 1 when anything differs.
"""

import dataclasses
import functools
import itertools
import json
import logging
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable

import jax
import jax.numpy as jnp
from absl import app, flags

from cnn_jax import models
from cnn_jax.models import cifar_resnet
from cnn_jax.native import check
from experiments import cli, configs

_REPEATS = flags.DEFINE_integer("repeats", 10, "Calls of each convolution on the CPU path.")
_MODELS = flags.DEFINE_list("models", None, "Only these models' convolutions (default: all).")
_CHILD_LISTING = flags.DEFINE_string("child_listing", None, "Internal: the convolutions to check.")
_CHILD_START = flags.DEFINE_integer("child_start", 0, "Internal: where in the listing to start.")

log = logging.getLogger("experiments.check_convolutions")

IMAGENET_BATCH = 2
# (width, train batch, eval batch, input channels) of the CIFAR nets' runs: the paper's recipe,
# its smoke argument, the README's Fashion-MNIST runs and the tests' tiny nets.
CIFAR_RUNS = (
    (16, 128, 1000, 3), (16, 64, 200, 3), (8, 64, 1000, 1), (4, 16, 16, 1), (4, 16, 16, 3),
)


def model_convolutions(model, image_shape: tuple[int, ...], batch: int, gradients: bool = True):
    """The convolutions of `model`'s training forward pass on a batch of `batch` images."""
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, *image_shape)), train=False)
    )
    images = jax.ShapeDtypeStruct((batch, *image_shape), jnp.float32)

    def forward(variables, images):
        return model.apply(
            variables, images, train=True, mutable=["batch_stats", "aux"],
            rngs={"dropout": jax.random.key(0)},
        )

    return check.convolutions(forward, variables, images, gradients=gradients)


def cifar_convolutions(name: str) -> set:
    """A CIFAR net's convolutions in every run of CIFAR_RUNS, under shortcuts A, B and C.

    Every depth of a family repeats the blocks of its 20-layer net (section 4.2's table), so
    its convolutions are the 20-layer net's.
    """
    return _cifar_family(cifar_resnet.NAME_PATTERN.fullmatch(name).group(1))


@functools.cache
def _cifar_family(kind: str) -> frozenset:
    found = set()
    for (width, batch, eval_batch, channels), shortcut in itertools.product(CIFAR_RUNS, "ABC"):
        name = f"cifar_{kind}20"
        model = models.create(name, width=width, shortcut=shortcut, **models.cpu_ops(name))
        found |= model_convolutions(model, (32, 32, channels), batch)
        found |= model_convolutions(model, (32, 32, channels), eval_batch, gradients=False)
    return frozenset(found)


def imagenet_convolutions(name: str) -> set:
    """An ImageNet net's convolutions at its native size (batch 2) and, where it has a recipe,
    at its smoke config's image size and batches."""
    model = models.create(name, **models.cpu_ops(name))
    found = model_convolutions(model, models.input_shape(name), IMAGENET_BATCH)
    recipe = f"imagenet_{name}"
    if recipe in configs.names():
        smoke = configs.get_config(f"{recipe}:smoke")
        model = models.from_config(smoke.model, num_classes=10)
        shape = models.input_shape(name, smoke.augment.image_size)
        found |= model_convolutions(model, shape, smoke.train.batch_size)
        found |= model_convolutions(model, shape, smoke.eval.batch_size, gradients=False)
    return found


def odd_convolutions() -> set:
    """Shapes few nets have: 1 to 5 channels, 1x1 kernels with stride 2, asymmetric padding."""
    found = set()
    paddings = {"same": None, "valid": ((0, 0), (0, 0)), "asymmetric": ((2, 0), (1, 3))}
    for channels, outputs, kernel, stride, padding in itertools.product(
        range(1, 6), (5, 16), (1, 3, 5), (1, 2), paddings.values()
    ):
        size = 9
        if padding is None:
            padding = jax.lax.padtype_to_pads((size, size), (kernel,) * 2, (stride,) * 2, "SAME")
        found.add(check.Convolution(
            (32, size, size, channels), (kernel, kernel, channels, outputs), (stride, stride),
            tuple(map(tuple, padding)),
        ))
    return found


def zoo_convolutions(names: Iterable[str] | None = None) -> set:
    """The distinct convolutions of the models `names` (default: the whole zoo) and the odd
    shapes."""
    found = odd_convolutions()
    for name in names or models.names():
        cifar = name.startswith("cifar_")
        found |= cifar_convolutions(name) if cifar else imagenet_convolutions(name)
    return found


def check_all(convolutions: Iterable[check.Convolution], repeats: int) -> list[check.Outcome]:
    """`check.compare` of every convolution, each in a child process, so that a kernel that
    crashes is reported as such and the others are still checked."""
    todo = sorted(convolutions)
    outcomes: list[check.Outcome] = []
    with tempfile.NamedTemporaryFile("w", suffix=".json") as listing:
        json.dump([dataclasses.asdict(c) for c in todo], listing)
        listing.flush()
        while len(outcomes) < len(todo):
            outcomes += _check_in_child(listing.name, todo, len(outcomes), repeats)
    return outcomes


def _check_in_child(listing: str, todo: list, start: int, repeats: int) -> list[check.Outcome]:
    """The outcomes of `todo[start:]` from one child process; if it dies, those before and one
    `failed` outcome for the convolution it died on."""
    command = [sys.executable, "-m", "experiments.check_convolutions", f"--child_listing={listing}",
               f"--child_start={start}", f"--repeats={repeats}"]
    environment = os.environ | {"CNN_JAX_ONEDNN_VERIFY": "0"}  # the kernels themselves
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment)
    outcomes = []
    for line in child.stdout:
        outcomes.append(_outcome(json.loads(line)))
        log.debug("%s", outcomes[-1])
    code = child.wait()
    if start + len(outcomes) < len(todo):
        crashed = todo[start + len(outcomes)]
        reason = f"the process died with exit code {code}"
        outcomes.append(check.Outcome(crashed, repeats, {}, repeats, False, reason))
    return outcomes


def _convolution(fields: dict) -> check.Convolution:
    """The inverse of `dataclasses.asdict` for a convolution (JSON has lists, not tuples)."""
    return check.Convolution(
        tuple(fields["images"]), tuple(fields["kernel"]), tuple(fields["strides"]),
        tuple(map(tuple, fields["padding"])), fields["gradients"],
    )


def _outcome(fields: dict) -> check.Outcome:
    return check.Outcome(_convolution(fields.pop("convolution")), **fields)


def _child(listing: str, start: int, repeats: int) -> None:
    """Checks the listed convolutions from `start` on, one JSON line per outcome."""
    for fields in json.loads(pathlib.Path(listing).read_text())[start:]:
        outcome = check.compare(_convolution(fields), repeats)
        print(json.dumps(dataclasses.asdict(outcome)), flush=True)


def summary(outcomes: list[check.Outcome]) -> str:
    calls = sum(o.calls for o in outcomes)
    bad = [o for o in outcomes if not o.ok]
    return (
        f"{len(outcomes)} convolutions, {calls} calls of each of their outputs on the CPU path: "
        f"{len(bad)} differ from XLA's."
    )


def main(argv: list[str]) -> None:
    from cnn_jax.native import onednn

    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if _CHILD_LISTING.value:
        _child(_CHILD_LISTING.value, _CHILD_START.value, _REPEATS.value)
        return
    if not onednn.available():
        log.warning("oneDNN is not available here: checking XLA's CPU fallback instead.")
    start = time.perf_counter()
    outcomes = check_all(zoo_convolutions(_MODELS.value), _REPEATS.value)
    for outcome in outcomes:
        if not outcome.ok:
            print(outcome)
    print(f"{summary(outcomes)} ({time.perf_counter() - start:.0f} s)")
    if any(not o.ok for o in outcomes):
        sys.exit(1)


if __name__ == "__main__":
    cli.run(main)
