"""Inception-v4 (Szegedy et al. 2016) on ImageNet.

    python -m experiments.train --config=imagenet_inception_v4 --config.dataset.manual_dir=DIR

Paper: 20.0% top-1 / 5.0% top-5 error, single crop.
"""

from experiments.configs import _imagenet


def get_config(arg=None):
    return _imagenet.inception_v4(arg)
