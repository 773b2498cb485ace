"""ResNet-20 on CIFAR-10 (He et al. 2015, Table 6; 269,722 parameters, paper: 0.27M).

    python -m experiments.degradation --config=cifar_resnet20

Paper: 8.75% test error after 64k iterations.
"""

from experiments.configs import _cifar


def get_config(arg=None):
    return _cifar.get_config("cifar_resnet20", arg)
