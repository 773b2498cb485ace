"""The loss landscape of Li, Xu, Taylor, Studer and Goldstein 2018 ("Visualizing the loss
landscape of neural nets", sections 4 and 6).

The training loss is evaluated at theta + a d1 + b d2 over a grid of (a, b), on a fixed,
unaugmented subset of the training set, with BatchNorm in inference mode. d1 and d2 are
Gaussian random directions with filter normalisation (section 4): each filter of d (a
convolution's output channel, a dense layer's output unit) is scaled to the norm of the same
filter of theta, d_ij <- d_ij / ||d_ij|| * ||theta_ij||, which makes nets of different scale
comparable; as in the paper's code, biases and BatchNorm's parameters (1-D arrays) get no
direction, and BatchNorm's statistics stay as trained. The same seed gives the same raw
directions to every net with the same parameter shapes, e.g. plain-56 and ResNet-56.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.analysis import trained
from cnn_jax.analysis.trained import TrainedNet
from cnn_jax.errors import ConfigError


def random_direction(key: jax.Array, params: Any) -> Any:
    """A Gaussian direction of the parameters' shapes, leaf i drawn from fold_in(key, i)."""
    leaves, treedef = jax.tree.flatten(params)
    drawn = [
        jax.random.normal(jax.random.fold_in(key, i), x.shape, jnp.float32)
        for i, x in enumerate(leaves)
    ]
    return jax.tree.unflatten(treedef, drawn)


def filter_normalize(direction: Any, params: Any) -> Any:
    """Each filter of `direction` (over all axes but the last, the output units, of arrays of
    2 or more axes) scaled to the norm of that filter in `params`; 1-D arrays set to zero."""

    def normalize(d, p):
        if p.ndim < 2:
            return jnp.zeros_like(d)
        axes = tuple(range(p.ndim - 1))
        norm = lambda x: jnp.sqrt(jnp.sum(jnp.square(x), axis=axes, keepdims=True))
        return d * (norm(p) / (norm(d) + 1e-10))

    return jax.tree.map(normalize, direction, params)


@functools.partial(jax.jit, static_argnums=1)
def directions(params: Any, seed: int) -> tuple[Any, Any]:
    """d1, d2: filter-normalised random directions at `params`."""
    key = jax.random.key(seed)
    return tuple(
        filter_normalize(random_direction(jax.random.fold_in(key, i), params), params)
        for i in (0, 1)
    )


def surface(
    net: TrainedNet,
    grid: int = 21,
    span: float = 1.0,
    examples: int = 2048,
    seed: int = 0,
    batch_size: int = 512,
    chunk: int | None = None,
    parallel: int = 1,
) -> dict[str, Any]:
    """Training loss and error (%) on the first `examples` training images over the grid
    a, b in linspace(-span, span, grid), and the 1-D curve along d1 (b = 0) at the same a.

    Returns the arrays of landscape.npz: alphas, betas, loss and error [grid, grid] (indexed
    [a, b]), curve_alphas, curve_loss, curve_error, and the settings and timing.
    """
    if grid < 3:
        raise ConfigError(f"The grid needs at least 3 points a side, got {grid}.")
    if span <= 0 or examples < 1:
        raise ConfigError(f"span and examples must be positive, got {span} and {examples}.")
    data = trained.put_split(net, "train", examples, min(batch_size, examples))
    alphas = np.linspace(-span, span, grid, dtype=np.float32)
    coords = np.stack(np.meshgrid(alphas, alphas, indexing="ij"), -1).reshape(-1, 2)
    on_grid = grid % 2 == 1  # the line b = 0 is the grid's middle column
    if not on_grid:
        coords = np.concatenate([coords, np.stack([alphas, np.zeros_like(alphas)], -1)])
    d1, d2 = directions(net.variables["params"], seed)

    def evaluate(coord, shared):
        variables, d1, d2, pixel_mean, data = shared
        params = jax.tree.map(
            lambda p, u, v: p + coord[0] * u + coord[1] * v, variables["params"], d1, d2
        )
        return trained.split_sums(
            net.model.apply, {**variables, "params": params}, pixel_mean, data
        )

    shared = (net.variables, d1, d2, net.pixel_mean, data)
    result = trained.map_variants(
        evaluate, coords, shared, chunk or grid, parallel, f"landscape of {net.config.model.name}"
    )
    loss = result.loss[: grid * grid].reshape(grid, grid)
    error = result.error[: grid * grid].reshape(grid, grid)
    middle = grid // 2
    curve_loss = loss[:, middle] if on_grid else result.loss[grid * grid :]
    curve_error = error[:, middle] if on_grid else result.error[grid * grid :]
    return {
        "alphas": alphas,
        "betas": alphas,
        "loss": loss,
        "error": error,
        "curve_alphas": alphas,
        "curve_loss": curve_loss,
        "curve_error": curve_error,
        "net": net.config.model.name,
        "seed": net.config.seed,
        "step": net.step,
        "examples": data.size,
        "span": span,
        "direction_seed": seed,
        "compile_s": result.compile_s,
        "seconds": result.seconds,
        "images_per_sec": result.images_per_sec,
    }


def summary(data: dict[str, Any]) -> dict[str, float]:
    """Numbers that describe a surface: the loss at the centre (the trained net), the mean loss
    on the grid's border, and the share of interior points where the surface curves down in
    some direction (the 2-D discrete Hessian has a negative eigenvalue): near 0 for a convex
    bowl, large for a chaotic surface."""
    loss = np.asarray(data["loss"], np.float64)
    middle = loss.shape[0] // 2
    border = np.concatenate([loss[0], loss[-1], loss[1:-1, 0], loss[1:-1, -1]])
    daa = loss[2:, 1:-1] - 2 * loss[1:-1, 1:-1] + loss[:-2, 1:-1]
    dbb = loss[1:-1, 2:] - 2 * loss[1:-1, 1:-1] + loss[1:-1, :-2]
    dab = (loss[2:, 2:] - loss[2:, :-2] - loss[:-2, 2:] + loss[:-2, :-2]) / 4
    smallest = (daa + dbb) / 2 - np.sqrt(((daa - dbb) / 2) ** 2 + dab**2)
    return {
        "center_loss": float(loss[middle, middle]) if loss.shape[0] % 2 else float("nan"),
        "border_loss": float(np.mean(border)),
        "nonconvex_share": float(np.mean(smallest < 0)),
    }
