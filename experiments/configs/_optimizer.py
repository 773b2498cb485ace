"""The optimizer section both recipe families start from."""

import ml_collections


def he_sgd() -> ml_collections.ConfigDict:
    """He et al. 2015 (sections 3.4 and 4.2): SGD, lr 0.1, momentum 0.9, weight decay 1e-4."""
    return ml_collections.ConfigDict(
        {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
    )
