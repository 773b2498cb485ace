"""VGG-19, configuration E (Simonyan & Zisserman 2014) on ImageNet, started from net A.

    python -m experiments.train --config=imagenet_vgg_a --config.dataset.manual_dir=DIR
    python -m experiments.train --config=imagenet_vgg19 \\
        --config.init.workdir=runs/imagenet_vgg_a --config.dataset.manual_dir=DIR

As in section 3.1, A's first four convolutional layers and its three FC layers initialise
E's layers of the same names (`_imagenet.VGG_FROM_A`); without `init.workdir` E starts from
Glorot initialization, which the paper found to work as well.

Paper: 27.3% / 9.0% top-1 / top-5 trained at S = 256; 25.5% / 8.0% with scale jittering
[256, 512] tested at Q = 384 (Table 3).
"""

from experiments.configs import _imagenet


def get_config(arg=None):
    return _imagenet.vgg("vgg19", arg)
