"""Plain-34, ResNet-34 without shortcuts (He et al. 2015, Table 2, Figure 4) on ImageNet.

    python -m experiments.train --config=imagenet_plain34 --config.dataset.manual_dir=DIR

Paper: 28.54% top-1 error (10-crop testing): worse than plain-18's 27.94%, with a higher
training error throughout (Figure 4, left).
"""

from experiments.configs import _imagenet


def get_config(arg=None):
    return _imagenet.resnet("plain34", arg)
