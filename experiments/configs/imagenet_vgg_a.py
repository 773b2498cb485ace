"""VGG-11, configuration A (Simonyan & Zisserman 2014) on ImageNet, as the paper trained it.

    python -m experiments.train --config=imagenet_vgg_a --config.dataset.manual_dir=DIR

Net A is the one the paper trained from random initialization (section 3.1): weights from a
zero-mean Gaussian of standard deviation 0.01 (`model.initialization=gaussian`; the paper
writes "10^-2 variance") and zero biases, at the fixed training scale S = 256 of Table 3's
A row. `--config.model.initialization=glorot` gives the Glorot initialization of the other
recipes.

Paper: 29.6% / 10.4% top-1 / top-5 error at S = Q = 256 (Table 3).
"""

from experiments.configs import _imagenet


def get_config(arg=None):
    return _imagenet.vgg("vgg_a", arg, initialization="gaussian", scale_range=(256, 256))
