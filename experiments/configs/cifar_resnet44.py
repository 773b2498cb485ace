"""ResNet-44 on CIFAR-10 (He et al. 2015, Table 6; 658,586 parameters, paper: 0.66M).

    python -m experiments.degradation --config=cifar_resnet44

Paper: 7.17% test error after 64k iterations.
"""

from experiments.configs import _cifar


def get_config(arg=None):
    return _cifar.get_config("cifar_resnet44", arg)
