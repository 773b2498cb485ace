"""ResNet-1202 on CIFAR-10 (He et al. 2015, Table 6; 19,421,274 parameters, paper: 19.4M).

    python -m experiments.degradation --config=cifar_resnet1202

Paper: 7.93% test error after 64k iterations.
Warms up at lr 0.01 until the training error is below 80% (at most 400 iterations);
the paper states this for ResNet-110 only.
"""

from experiments.configs import _cifar


def get_config(arg=None):
    return _cifar.get_config("cifar_resnet1202", arg)
