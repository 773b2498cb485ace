r"""He et al. 2015's degradation experiment on CIFAR-10: train one config, resumably.

    python -m experiments.degradation --config=cifar_plain56
    python -m experiments.degradation --config=cifar_resnet56:smoke --workdir=/tmp/r56 \
        --config.dataset.name=fashion_mnist --config.dataset.source=files \
        --config.dataset.data_dir=/usr/share/datasets/fashion-mnist

The workdir (default runs/<config name>) receives config.json, metrics.jsonl, TensorBoard
events, checkpoints/ and summary.json. Running the same command again resumes from the
latest checkpoint; Ctrl-C saves a checkpoint and stops.
"""

from experiments import cli
from experiments.train import main

if __name__ == "__main__":
    cli.run(main)
