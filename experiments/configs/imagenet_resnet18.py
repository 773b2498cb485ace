"""ResNet-18 (He et al. 2015, Table 2) on ImageNet.

    python -m experiments.train --config=imagenet_resnet18 --config.dataset.manual_dir=DIR

Paper: 27.88% top-1 error (10-crop testing); plain-18: 27.94%.
"""

from experiments.configs import _imagenet


def get_config(arg=None):
    return _imagenet.resnet("resnet18", arg)
