"""GoogLeNet (Szegedy et al. 2014) on ImageNet.

    python -m experiments.train --config=imagenet_googlenet --config.dataset.manual_dir=DIR

Paper: 10.07% top-5 error for one model and one crop (Table 5); 6.67% for 7 models and
144 crops.
"""

from experiments.configs import _imagenet


def get_config(arg=None):
    return _imagenet.googlenet(arg)
