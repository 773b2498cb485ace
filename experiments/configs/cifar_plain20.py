"""Plain-20 on CIFAR-10: ResNet-20 without shortcuts (269,722 parameters).

    python -m experiments.degradation --config=cifar_plain20

Paper: training error below every deeper plain net's throughout training
(Figures 1 and 6); test error about 9.5% (read off Figure 6, no table value published).
"""

from experiments.configs import _cifar


def get_config(arg=None):
    return _cifar.get_config("cifar_plain20", arg)
