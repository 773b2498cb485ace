"""ResNet-110 on CIFAR-10 (He et al. 2015, Table 6; 1,727,962 parameters, paper: 1.7M).

    python -m experiments.degradation --config=cifar_resnet110

Paper: 6.43% test error after 64k iterations (best of 5 runs; 6.61 +- 0.16 on average).
Warms up at lr 0.01 until the training error is below 80% (at most 400 iterations).
"""

from experiments.configs import _cifar


def get_config(arg=None):
    return _cifar.get_config("cifar_resnet110", arg)
