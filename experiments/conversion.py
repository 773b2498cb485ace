"""Writing converted weights as a workdir: the library side of `experiments.convert`."""

import hashlib
import pathlib


def converted_config(model: str, weights: pathlib.Path, dataset: str):
    """The config.json of a converted checkpoint: the ImageNet recipe's fields, the model with
    the attributes the weights need, and the preprocessing they expect."""
    from cnn_jax.weights import convert
    from experiments.configs import _imagenet

    twin = convert.source(model)
    config = _imagenet.base(model, None)
    config.name = f"converted_{model}"
    config.dataset.name = dataset
    config.model.update(twin.overrides)
    config.model.dtype = "float32"
    prep = twin.preprocessing
    config.augment.image_size = prep["image_size"]
    config.augment.mean_rgb = prep["mean_rgb"]
    config.augment.stddev_rgb = prep["stddev_rgb"]
    config.augment.scale_range = (prep["resize"], prep["resize"])
    config.eval.resize = prep["resize"]
    config.train.steps = 0
    config.converted = {"library": twin.library, "name": twin.name,
                        "weights": str(weights.absolute()), "sha256": _sha256(weights)}
    return config


def write(model: str, weights: str | pathlib.Path, workdir: str | pathlib.Path,
          dataset: str = "imagenet2012") -> None:
    """Converts `weights` for zoo net `model` into `workdir` (see the module docstring)."""
    import jax
    from etils import epath

    from cnn_jax.errors import WorkdirError
    from cnn_jax import sharding
    from cnn_jax.data import catalog
    from cnn_jax.training import checkpoint, optim, state as state_lib
    from cnn_jax.training import workdir as workdir_lib
    from cnn_jax.weights import convert, files

    weights, workdir = pathlib.Path(weights), epath.Path(workdir)
    tensors = files.read_state_dict(weights)
    config = converted_config(model, weights, dataset)
    num_classes = catalog.num_classes(config.dataset)
    variables = convert.convert(model, tensors, num_classes)
    if (workdir / "checkpoints").exists():
        raise WorkdirError(f"{workdir} already holds checkpoints; convert into a new --workdir.")
    with workdir_lib.lock(workdir):
        net = convert.create_model(model, num_classes)
        optimizer = optim.direction(config)
        mesh = sharding.make_mesh()
        state = state_lib.abstract(net, optimizer, config, catalog.input_shape(config),
                                   catalog.mean_shape(config), mesh)
        replicated = sharding.replicated(mesh)
        zeros = jax.jit(lambda: jax.tree.map(lambda s: jax.numpy.zeros(s.shape, s.dtype), state),
                        out_shardings=replicated)()  # step 0, zero momentum and pixel mean
        put = lambda tree: jax.tree.map(lambda x: jax.device_put(x, replicated), tree)
        params = put(variables["params"])
        average = jax.tree.map(jax.numpy.copy, params) if zeros.ema_params else {}
        filled = zeros.replace(params=params, batch_stats=put(variables.get("batch_stats", {})),
                               ema_params=average)
        ckpts = checkpoint.Checkpoints(workdir / "checkpoints", keep=config.checkpoint.keep)
        workdir_lib.write_atomically(workdir / workdir_lib.CONFIG,
                                     config.to_json_best_effort(indent=2) + "\n")
        ckpts.save(filled)
        ckpts.close()


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
