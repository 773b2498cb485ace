"""Data + compiled steps, for the two kinds of data set the loop trains on.

`InMemory` (CIFAR, MNIST, ...): the splits live on the devices; batches are drawn, cropped
and flipped inside the compiled step, many steps per call. `Streaming` (ImageNet,
Imagenette): tf.data decodes and augments on the host, one process shard each, and the host
feeds one global batch per step. Both expose the same three methods to the training loop.
"""

import collections
import itertools
import time
from typing import Any, Iterator

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from cnn_jax.data import augment, catalog, datasets, in_memory
from cnn_jax.errors import ConfigError
from cnn_jax import sharding
from cnn_jax.training import steps
from cnn_jax.training.state import TrainState


def create(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    replicas: int = 1,
):
    """The pipeline of `config.dataset` (InMemory or Streaming), training `replicas` seeds of
    the net at once (the state has a leading replica axis)."""
    kind = Streaming if catalog.is_streaming(config.dataset.name) else InMemory
    return kind(config, model, optimizer, mesh, replicas)


class InMemory:
    """CIFAR-sized sets on the devices; the whole step, data included, is compiled."""

    def __init__(self, config, model, optimizer, mesh, replicas):
        splits = datasets.load(config.dataset)
        if config.train.batch_size > len(splits["train"]):
            raise ConfigError(
                f"train.batch_size={config.train.batch_size} exceeds the "
                f"{len(splits['train'])} training examples."
            )
        self.pixel_mean = augment.pixel_mean(splits["train"].images)
        self.input_shape = catalog.input_shape(config)
        self._train = in_memory.put_train(splits["train"], mesh)
        self._eval = {
            name: in_memory.put_eval(
                _first(splits[name], config.eval.max_examples), config.eval.batch_size, mesh
            )
            for name in ("val", "test")
            if name in splits
        }
        self._train_steps = steps.make_train_steps(model, optimizer, config, mesh, replicas)
        resize = config.augment.get("resize", 0)
        self._evaluate = steps.make_evaluate(model, mesh, replicas, resize)
        self._diagnostics = steps.make_diagnostics(model, mesh, replicas)
        # A fixed batch of unaugmented training images for the diagnostics.
        probe = splits["train"].take(slice(0, config.train.batch_size))
        normalized = augment.resize(augment.normalize(probe.images, self.pixel_mean), resize)
        normalized = np.asarray(normalized, np.float32)
        self._probe = (sharding.global_array(normalized, sharding.sharded(mesh)),
                       sharding.global_array(probe.labels, sharding.sharded(mesh)))

    def compile(self, state: TrainState) -> float:
        return self._train_steps.compile(state, self._train)

    def train(self, state: TrainState, num_steps: int) -> tuple[TrainState, steps.Metrics]:
        return self._train_steps(state, self._train, num_steps)

    def evaluate(self, state: TrainState) -> dict[str, steps.Metrics]:
        return {name: self._evaluate(state, split) for name, split in self._eval.items()}

    def diagnostics(self, state: TrainState) -> steps.Metrics:
        return self._diagnostics(state, *self._probe)


class Streaming:
    """Large sets read by tf.data on the host; each process feeds its part of every batch."""

    def __init__(self, config, model, optimizer, mesh, replicas):
        from cnn_jax.data import imagenet

        self._imagenet = imagenet
        self._config, self._mesh = config, mesh
        imagenet.num_examples(config, "train")  # fails now, not after compiling, without data
        self.pixel_mean = np.zeros(catalog.mean_shape(config), np.float32)
        self.input_shape = catalog.input_shape(config)
        self._jitted_step = steps.make_stream_step(model, optimizer, config, mesh, replicas)
        self._step = self._jitted_step
        self._evaluate_batch = steps.make_evaluate_batch(model, mesh, replicas)
        self._batches: Iterator[dict[str, jax.Array]] | None = None
        self._next_step = None

    def compile(self, state: TrainState) -> float:
        batch = self._config.train.batch_size
        size = self._config.augment.image_size
        batch_sharding = sharding.sharded(self._mesh)
        images = jax.ShapeDtypeStruct((batch, size, size, 3), np.float32, sharding=batch_sharding)
        labels = jax.ShapeDtypeStruct((batch,), np.int32, sharding=batch_sharding)
        start = time.perf_counter()
        self._step = self._jitted_step.lower(state, images, labels).compile()
        return time.perf_counter() - start

    def train(self, state: TrainState, num_steps: int) -> tuple[TrainState, steps.Metrics]:
        step = int(state.step[0])
        if self._batches is None or self._next_step != step:
            self._batches = self._device_batches(step)
        sums = steps.zero_sums() | {"lr": np.float32(0), "finite": np.True_}
        for _ in range(num_steps):
            batch = next(self._batches)
            state, metrics = self._step(state, batch["images"], batch["labels"])
            sums = steps._accumulate(sums, metrics)
        self._next_step = step + num_steps
        return state, sums

    def evaluate(self, state: TrainState) -> dict[str, steps.Metrics]:
        """Top-1/top-5 sums over the validation split (the papers' test set), at most
        `eval.max_examples` of it rounded up to whole batches."""
        config = self._config
        batch_size = config.eval.batch_size
        examples = self._imagenet.num_examples(config, "validation")
        if config.eval.get("max_examples"):
            examples = min(examples, config.eval.max_examples)
        # Every process runs the same number of batches (shards may differ by an example).
        total = -(-examples // batch_size)
        local = self._imagenet.eval_batches(
            config,
            "validation",
            batch_size // jax.process_count(),
            jax.process_index(),
            jax.process_count(),
        )
        sums, template = None, None
        for batch in itertools.islice(itertools.chain(local, itertools.repeat(None)), total):
            if batch is None:  # this process's shard ran out: a batch that counts nothing
                batch = {k: np.zeros_like(v) for k, v in template.items()}
            template = batch
            arrays = {k: self._put(np.asarray(v)) for k, v in batch.items()}
            batch_sums = self._evaluate_batch(
                state, arrays["images"], arrays["labels"], arrays["mask"]
            )
            sums = (
                batch_sums if sums is None else jax.tree.map(lambda a, b: a + b, sums, batch_sums)
            )
        return {"val": sums}

    def diagnostics(self, state: TrainState) -> steps.Metrics:
        return {}  # measured on the in-memory sets only

    def _device_batches(self, start_step: int) -> Iterator[dict[str, jax.Array]]:
        host = self._imagenet.train_batches(
            self._config, self._config.train.batch_size, self._config.seed, start_step,
            jax.process_index(), jax.process_count(),
        )
        return _prefetch((({k: self._put(v) for k, v in batch.items()}) for batch in host), size=2)

    def _put(self, local: np.ndarray) -> jax.Array:
        """A global array, batch split over the devices, from this process's rows."""
        return jax.make_array_from_process_local_data(sharding.sharded(self._mesh), local)


def _prefetch(iterator: Iterator[Any], size: int) -> Iterator[Any]:
    """Keeps `size` batches in flight to the devices ahead of the step that needs them."""
    queue = collections.deque(itertools.islice(iterator, size))
    while queue:
        yield queue.popleft()
        queue.extend(itertools.islice(iterator, 1))


def _first(split: datasets.Split, max_examples: int) -> datasets.Split:
    return split.take(slice(0, max_examples)) if max_examples else split
