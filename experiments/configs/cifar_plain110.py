"""Plain-110 on CIFAR-10: ResNet-110 without shortcuts (1,727,962 parameters).

    python -m experiments.degradation --config=cifar_plain110

Paper: training error above 60% (Figure 6, right); warms up at lr 0.01 until
the training error is below 80% (at most 400 iterations), as ResNet-110 does.
"""

from experiments.configs import _cifar


def get_config(arg=None):
    return _cifar.get_config("cifar_plain110", arg)
