"""The CPU convolution path checked against XLA's own convolutions, shape by shape.

oneDNN picks a kernel for each shape, instruction set and thread count, so a kernel that is
wrong for one shape says nothing about the next. `convolutions(fn, *args)` lists the distinct
convolutions a function runs (from its jaxpr); `compare` runs one of them, its input gradient
and its weight gradient through `cnn_jax.cpu.conv.conv_general_dilated` several times on
random data, with every thread the machine has, and measures each call against
`lax.conv_general_dilated` compiled by XLA. A call matches when its largest error is within
`TOLERANCE` of the largest reference value, and the repeated calls must agree bit for bit
(exact resumption depends on it).

`trusted` applies the same test to oneDNN's own kernels the first time a machine runs a
convolution (the answer is kept in the native cache, per build, CPU and thread count): a
convolution whose kernels disagree with XLA's runs on XLA's instead, with one warning.
"""

import dataclasses
import functools
import hashlib
import json
import logging
import os
import pathlib
import platform
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.extend as jex
import numpy as np
from jax import lax

from cnn_jax.native import build, onednn

log = logging.getLogger(__name__)

# Float32 sums in another order differ by a few units in the last place of the largest term;
# a wrong kernel errs by the size of the values themselves.
TOLERANCE = 1e-4
OUTPUTS = ("forward", "input_grad", "weight_grad")


@dataclasses.dataclass(frozen=True, order=True)
class Convolution:
    """One NHWC x HWIO convolution: batch and shapes, strides, explicit padding, and whether
    training runs its gradients too (evaluation runs only the forward pass)."""

    images: tuple[int, int, int, int]
    kernel: tuple[int, int, int, int]
    strides: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]
    gradients: bool = True

    def __str__(self) -> str:
        n, h, w, c = self.images
        kh, kw, _, o = self.kernel
        pads = ",".join(f"{lo}:{hi}" for lo, hi in self.padding)
        kind = "" if self.gradients else " (forward only)"
        return f"{n}x{h}x{w}x{c} * {kh}x{kw}x{c}x{o} stride {self.strides} pad {pads}{kind}"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What `compare` found: the worst error of each output over the repeated calls (relative
    to the reference's largest magnitude), how many calls erred, and whether they all agreed."""

    convolution: Convolution
    calls: int
    worst: dict[str, float]
    mismatched_calls: int
    deterministic: bool
    failure: str | None = None  # the error a call raised, if one did

    @property
    def ok(self) -> bool:
        return self.mismatched_calls == 0 and self.deterministic and self.failure is None

    def __str__(self) -> str:
        if self.failure is not None:
            return f"{self.convolution}: failed ({self.failure})"
        errors = ", ".join(f"{k} {v:.1e}" for k, v in self.worst.items())
        flaky = "" if self.deterministic else ", repeated calls differ"
        off = f"{self.mismatched_calls}/{self.calls} calls off"
        return f"{self.convolution}: {off} ({errors}{flaky})"


NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))


def convolutions(fn: Callable[..., Any], *args: Any, gradients: bool = True) -> set[Convolution]:
    """The distinct plain NHWC x HWIO convolutions that `fn(*args)` runs (the ones the CPU path
    may hand to oneDNN), read off its jaxpr; `args` may be `jax.ShapeDtypeStruct`s."""
    found = set()
    for eqn in _equations(jax.make_jaxpr(fn)(*args).jaxpr):
        if eqn.primitive.name != "conv_general_dilated":
            continue
        p = eqn.params
        plain = (
            p["dimension_numbers"] == NHWC
            and p["feature_group_count"] == 1 and p["batch_group_count"] == 1
            and set(p["lhs_dilation"]) == {1} and set(p["rhs_dilation"]) == {1}
        )
        if plain:
            found.add(Convolution(
                images=tuple(eqn.invars[0].aval.shape), kernel=tuple(eqn.invars[1].aval.shape),
                strides=tuple(p["window_strides"]), padding=tuple(map(tuple, p["padding"])),
                gradients=gradients,
            ))
    return found


def _equations(jaxpr: jex.core.Jaxpr) -> Iterator[jex.core.JaxprEqn]:
    """Every equation of `jaxpr` and of the jaxprs nested in it (jit, scan, cond, custom_vjp)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in _nested(eqn.params.values()):
            yield from _equations(sub)


def _nested(values: Iterable[Any]) -> Iterator[jex.core.Jaxpr]:
    for value in values:
        if isinstance(value, jex.core.ClosedJaxpr):
            yield value.jaxpr
        elif isinstance(value, jex.core.Jaxpr):
            yield value
        elif isinstance(value, (tuple, list)):
            yield from _nested(value)


def _runner(path: str, convolution: Convolution) -> Callable:
    """The compiled (y, dx, dw) of `convolution`, given x, w and dy: through XLA's
    convolutions (`xla`), the CPU path the models use (`cpu`), or oneDNN's kernels alone
    (`onednn`)."""
    strides, padding = convolution.strides, convolution.padding

    def run(x, w, dy):
        if path == "onednn":
            y = onednn.forward(x, w, strides, padding)
            if not convolution.gradients:
                return (y,)
            return (y, onednn.input_grad(dy, w, x.shape, strides, padding),
                    onednn.weight_grad(x, dy, w.shape, strides, padding))
        if path == "xla":
            conv = lax.conv_general_dilated
        else:
            from cnn_jax.cpu import conv as cpu_conv

            conv = cpu_conv.conv_general_dilated
        y, vjp = jax.vjp(
            lambda x, w: conv(x, w, strides, padding, dimension_numbers=NHWC), x, w
        )
        return (y, *vjp(dy)) if convolution.gradients else (y,)

    return jax.jit(run)


def compare(
    convolution: Convolution, repeats: int = 10, seed: int = 0, path: str = "cpu"
) -> Outcome:
    """Runs `convolution` `repeats` times on `path` (see `_runner`) and once on XLA's, on the
    same random data, and measures every call against XLA's."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(convolution.images, np.float32)
    w = rng.standard_normal(convolution.kernel, np.float32)
    y_shape = jax.eval_shape(
        lambda x, w: lax.conv_general_dilated(
            x, w, convolution.strides, convolution.padding, dimension_numbers=NHWC
        ), x, w,
    ).shape
    dy = rng.standard_normal(y_shape, np.float32)
    reference = [np.asarray(a) for a in _runner("xla", convolution)(x, w, dy)]
    ours = _runner(path, convolution)
    worst = dict.fromkeys(OUTPUTS[: len(reference)], 0.0)
    mismatched, first, deterministic = 0, None, True
    for _ in range(repeats):
        try:
            outputs = [np.asarray(a) for a in ours(x, w, dy)]
        except jax.errors.JaxRuntimeError as e:
            failure = str(e).strip().splitlines()[0]
            return Outcome(convolution, repeats, worst, repeats, False, failure)
        errors = [_relative_error(a, b) for a, b in zip(outputs, reference)]
        mismatched += any(e > TOLERANCE for e in errors)
        worst = {k: max(v, e) for (k, v), e in zip(worst.items(), errors)}
        if first is None:
            first = outputs
        deterministic &= all(np.array_equal(a, b) for a, b in zip(outputs, first))
    return Outcome(convolution, repeats, worst, mismatched, deterministic)


def _relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest |actual - expected| over the largest |expected| (NaN anywhere counts as wrong)."""
    if actual.shape != expected.shape or not np.all(np.isfinite(actual)):
        return float("inf")
    scale = max(float(np.max(np.abs(expected))), np.finfo(np.float32).tiny)
    return float(np.max(np.abs(actual - expected))) / scale


TRUST_REPEATS = 3


def trusted(convolution: Convolution) -> bool:
    """Whether oneDNN's kernels compute `convolution` (forward pass and both gradients) as
    XLA's do on this machine; checked on its first use here. `CNN_JAX_ONEDNN_VERIFY=0` trusts
    them unchecked (the gate, `experiments.check_convolutions`, tests them raw)."""
    if os.environ.get("CNN_JAX_ONEDNN_VERIFY", "1") == "0":
        return True
    return _trusted(dataclasses.replace(convolution, gradients=True))


@functools.cache
def _trusted(convolution: Convolution) -> bool:
    record = _record_path()
    known = _read_record(record)
    key = str(convolution)
    if key not in known:
        with jax.ensure_compile_time_eval():  # runs now, even while a program is traced
            outcome = compare(convolution, TRUST_REPEATS, path="onednn")
        known = _read_record(record) | {key: outcome.ok}
        if outcome.ok:
            _write_record(record, known)
        else:
            log.warning(
                "oneDNN's kernels disagree with XLA's on this CPU for %s; that convolution "
                "runs on XLA's kernels instead.", outcome,
            )
    return known.get(key, False)


def _record_path() -> pathlib.Path:
    """The verdicts of this build of the handlers on this CPU, with this many threads and the
    instruction sets oneDNN is allowed (its kernels differ by both)."""
    settings = ("OMP_NUM_THREADS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_CPU_ISA_HINTS")
    cpu = [platform.machine(), str(os.cpu_count()), *(os.environ.get(k, "") for k in settings)]
    try:
        info = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
        cpu += sorted({line for line in info if line.startswith(("model name", "flags"))})
    except OSError:
        pass
    machine = hashlib.sha256("\0".join(cpu).encode()).hexdigest()[:8]
    name = f"verified-{build.environment_key()}-{build.build_key()}-{machine}.json"
    return build.cache_directory() / name


def _read_record(path: pathlib.Path) -> dict[str, bool]:
    if not build.private(path):
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict):
        return {}
    return {k: v for k, v in record.items() if isinstance(v, bool)}


def _write_record(path: pathlib.Path, record: dict[str, bool]) -> None:
    """Atomically, and only into a private cache (see `build.private`)."""
    if not build.private(path.parent):
        return
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(record, f, indent=0, sort_keys=True)
    os.replace(f.name, path)
