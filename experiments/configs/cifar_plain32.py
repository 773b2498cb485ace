"""Plain-32 on CIFAR-10: ResNet-32 without shortcuts (464,154 parameters).

    python -m experiments.degradation --config=cifar_plain32

Paper: training error above every shallower plain net's throughout training
(Figure 6); test error about 10% (read off Figure 6, no table value published).
"""

from experiments.configs import _cifar


def get_config(arg=None):
    return _cifar.get_config("cifar_plain32", arg)
