"""Plain-18, ResNet-18 without shortcuts (He et al. 2015, Table 2) on ImageNet.

    python -m experiments.train --config=imagenet_plain18 --config.dataset.manual_dir=DIR

Paper: 27.94% top-1 error (10-crop testing), about ResNet-18's 27.88%.
"""

from experiments.configs import _imagenet


def get_config(arg=None):
    return _imagenet.resnet("plain18", arg)
