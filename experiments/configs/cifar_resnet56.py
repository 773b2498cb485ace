"""ResNet-56 on CIFAR-10 (He et al. 2015, Table 6; 853,018 parameters, paper: 0.85M).

    python -m experiments.degradation --config=cifar_resnet56

Paper: 6.97% test error after 64k iterations.
"""

from experiments.configs import _cifar


def get_config(arg=None):
    return _cifar.get_config("cifar_resnet56", arg)
