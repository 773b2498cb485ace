"""AlexNet (Krizhevsky et al. 2012) on ImageNet.

    python -m experiments.train --config=imagenet_alexnet --config.dataset.manual_dir=DIR

Paper: 40.7% top-1 / 18.2% top-5 error on the validation set (one net, 10 test crops).
"""

from experiments.configs import _imagenet


def get_config(arg=None):
    return _imagenet.alexnet(arg)
