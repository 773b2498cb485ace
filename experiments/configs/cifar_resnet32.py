"""ResNet-32 on CIFAR-10 (He et al. 2015, Table 6; 464,154 parameters, paper: 0.46M).

    python -m experiments.degradation --config=cifar_resnet32

Paper: 7.51% test error after 64k iterations.
"""

from experiments.configs import _cifar


def get_config(arg=None):
    return _cifar.get_config("cifar_resnet32", arg)
