"""ResNet-50 (He et al. 2015, Table 3) on ImageNet, with shortcut option B (section 4.1).

    python -m experiments.train --config=imagenet_resnet50 --config.dataset.manual_dir=DIR

Paper: 22.85% top-1 / 6.71% top-5 error (10-crop testing).
"""

from experiments.configs import _imagenet


def get_config(arg=None):
    return _imagenet.resnet("resnet50", arg)
