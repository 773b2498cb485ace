"""ResNet-18 (He et al. 2015, Table 2) on ImageNet, with Table 2's shortcut option A.

    python -m experiments.train --config=imagenet_resnet18 --config.dataset.manual_dir=DIR

Option A (section 3.3: identity shortcuts, zero-padded where the width grows) adds no
parameters to plain-18 (section 4.1), so the two nets of Table 2 have the same parameters.
Option B (torchvision's resnet18: 1x1 projections where the shape changes) is
`--config.model.shortcut=B`.

Paper: 27.88% top-1 error (10-crop testing); plain-18: 27.94%.
"""

from experiments.configs import _imagenet


def get_config(arg=None):
    return _imagenet.resnet("resnet18", arg)
