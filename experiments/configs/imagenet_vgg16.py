"""VGG-16, configuration D (Simonyan & Zisserman 2014) on ImageNet.

    python -m experiments.train --config=imagenet_vgg16 --config.dataset.manual_dir=DIR

Paper: 27.0% / 8.8% top-1 / top-5 trained at S = 256; 25.6% / 8.1% with scale jittering
[256, 512] tested at Q = 384 (Table 3). Weights from Glorot initialization, with which the
paper found the deeper nets train from scratch (section 3.1).
"""

from experiments.configs import _imagenet


def get_config(arg=None):
    return _imagenet.vgg("vgg16", arg)
