r"""Evaluate a run's checkpoint again: test (and validation) loss and error, or one of the
papers' test protocols on an ImageNet run.

    python -m experiments.evaluate --workdir=runs/cifar_resnet56
    python -m experiments.evaluate --workdir=runs/cifar_resnet56 --step=32000
    python -m experiments.evaluate --workdir=runs/imagenet_vgg16 --protocol=dense \
      --scales=256,384,512
    python -m experiments.evaluate --workdir=runs/imagenet_resnet50 --protocol=ten_crop \
      --scales=224,256,384,480,640

The checkpoint (latest by default) is restored onto whatever devices are present and
evaluated on the splits its training evaluated, with the config in the workdir. The last line
printed is one JSON object: {"step": ..., "test": {"loss": ..., "error": ...}, ...}.

--protocol (ImageNet runs): `center` or `ten_crop` crops of the image rescaled to shorter
side Q, `dense` (VGG section 3.2: the whole image, FC layers as convolutions, averaged with
its flip) or `multi_crop` (VGG's 50 crops: a 5x5 grid and flips), at each Q of --scales
(default: the run's eval.resize). The JSON then holds top-1/top-5 error per scale and
combined (posteriors averaged over the scales): {"step", "protocol", "scales": {Q: {...}},
"combined": {...}}.
"""

import json
import logging

from absl import app, flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir.", required=True)
_STEP = flags.DEFINE_integer("step", None, "The checkpoint's step (default: the latest).")
_PROTOCOL = flags.DEFINE_enum(
    "protocol", None, ["center", "ten_crop", "dense", "multi_crop"],
    "A test protocol of the papers (ImageNet runs); default: the run's own evaluation.",
)
_SCALES = flags.DEFINE_list(
    "scales", None, "Shorter sides Q to test at, e.g. 256,384,512 (with --protocol)."
)

log = logging.getLogger("experiments.evaluate")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    from cnn_jax.errors import ConfigError

    if _SCALES.value and not _PROTOCOL.value:
        raise ConfigError("--scales needs --protocol.")
    if _PROTOCOL.value:
        protocol(_PROTOCOL.value, _SCALES.value)
        return
    from cnn_jax.training import evaluation

    step, results = evaluation.evaluate_workdir(_WORKDIR.value, _STEP.value)
    for split, values in results.items():
        log.info("%s at step %d: %s loss %.4f, error %.2f%%.", _WORKDIR.value, step, split,
                 values["loss"], values["error"])
    print(json.dumps({"step": step, **results}))


def protocol(name: str, scales: list[str] | None) -> None:
    from cnn_jax.errors import ConfigError
    from cnn_jax.training import protocols

    try:
        sizes = [int(q) for q in scales] if scales else None
    except ValueError:
        raise ConfigError(
            f"--scales must be whole numbers of pixels, got {','.join(scales)}."
        ) from None
    result = protocols.evaluate(_WORKDIR.value, name, sizes, _STEP.value)
    for label, values in [*result["scales"].items(), ("combined", result["combined"])]:
        log.info("%s at step %d, %s, Q=%s: top-1 error %.2f%%, top-5 error %.2f%%.", _WORKDIR.value,
                 result["step"], name, label, values["error"], values["top5_error"])
    print(json.dumps(result))


if __name__ == "__main__":
    cli.run(main)
