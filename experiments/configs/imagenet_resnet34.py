"""ResNet-34 (He et al. 2015, Table 2) on ImageNet.

    python -m experiments.train --config=imagenet_resnet34 --config.dataset.manual_dir=DIR

Paper: 25.03% top-1 error (10-crop testing), against plain-34's 28.54%: the degradation
problem and its fix on ImageNet.
"""

from experiments.configs import _imagenet


def get_config(arg=None):
    return _imagenet.resnet("resnet34", arg)
