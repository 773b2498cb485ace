r"""Convert torchvision / timm weights into a workdir that every command reads like a run's.

    python -m experiments.convert --model=resnet50 --weights=resnet50.safetensors \
        --workdir=runs/converted/resnet50
    python -m experiments.evaluate --workdir=runs/converted/resnet50 \
        --config.dataset.manual_dir=DIR   # (or with the imagenet2012 tfds data prepared)

`--model` is the zoo's name (`python -m experiments.convert --model=help` lists them with
their PyTorch twins). The workdir receives `checkpoints/0` (orbax: the train state at step 0,
with the converted params and BatchNorm statistics) and `config.json`: the model with the
attributes the weights need, its data set (imagenet2012, 1000 classes) and the input
preprocessing the weights expect (`augment.mean_rgb` / `augment.stddev_rgb`, the crop size
`augment.image_size` and the shorter side `eval.resize`). `cnn_jax.training.checkpoint.load`
returns the model and its variables; `init.workdir=DIR` starts a training run from them.

The weights are the user's to download, e.g. on a machine with the network:

    import torchvision, safetensors.torch
    net = torchvision.models.resnet50(weights="IMAGENET1K_V1")
    safetensors.torch.save_file(net.state_dict(), "resnet50.safetensors")
    # timm: timm.create_model("inception_v4", pretrained=True).state_dict()

A `.pth` / `.pt` file works too (read with torch.load(weights_only=True)); `.safetensors`
needs no torch. This command never downloads anything.
"""

import json

from absl import app, flags

from experiments import cli, conversion

_MODEL = flags.DEFINE_string("model", None, "The zoo's name of the net (help: list them).",
                             required=True)
_WEIGHTS = flags.DEFINE_string("weights", None, "A .safetensors or .pth/.pt state dict.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the checkpoint and config.json go.")
_DATASET = flags.DEFINE_string("dataset", "imagenet2012", "The data set the head's classes are "
                               "(imagenet2012: 1000, imagenette: 10).")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    from cnn_jax.weights import convert

    if _MODEL.value == "help":
        for name in convert.names():
            print(f"{name}: {convert.source(name).library} {convert.source(name).name}")
        return
    convert.source(_MODEL.value)  # an unknown name fails before the file is read
    if not _WEIGHTS.value or not _WORKDIR.value:
        raise app.UsageError("--weights and --workdir are required.")
    conversion.write(_MODEL.value, _WEIGHTS.value, _WORKDIR.value, _DATASET.value)
    print(json.dumps({"model": _MODEL.value, "workdir": _WORKDIR.value}))


if __name__ == "__main__":
    cli.run(main)
