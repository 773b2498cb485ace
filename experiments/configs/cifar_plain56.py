"""Plain-56 on CIFAR-10: ResNet-56 without shortcuts (853,018 parameters).

    python -m experiments.degradation --config=cifar_plain56

Paper: training error above every shallower plain net's throughout training
(Figures 1 and 6); test error about 13.5% (read off Figure 6, no table value published).
"""

from experiments.configs import _cifar


def get_config(arg=None):
    return _cifar.get_config("cifar_plain56", arg)
