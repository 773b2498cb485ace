"""ResNet-34 (He et al. 2015, Table 2) on ImageNet, with Table 2's shortcut option A.

    python -m experiments.train --config=imagenet_resnet34 --config.dataset.manual_dir=DIR

Option A (section 3.3: identity shortcuts, zero-padded where the width grows) adds no
parameters to plain-34 (section 4.1), so the two nets of Table 2 have the same parameters.
Option B (torchvision's resnet34: 1x1 projections where the shape changes) is
`--config.model.shortcut=B`; the paper's Table 3 gives 24.52% top-1 for it (10-crop).

Paper: 25.03% top-1 error (10-crop testing), against plain-34's 28.54%: the degradation
problem and its fix on ImageNet.
"""

from experiments.configs import _imagenet


def get_config(arg=None):
    return _imagenet.resnet("resnet34", arg)
