"""The parameter counts and multiply-adds the papers (or torchvision / timm, where the paper
gives none) publish for each model, to set next to `cnn_jax.models.summary`'s counts.

    published.NUMBERS["resnet50"]  # Published(params=25_557_032, multiply_adds=3.8e9, source=...)

A value is None where no source gives one. Rounded values ("0.27M", "138M") are stored as
the number they round, so compare them with a tolerance.

ResNets' shortcut options (He et al. 2015, section 3.3): the `resnet18`/`resnet34` counts are
torchvision's, option B (1x1 projections where the shape changes, the models' default). Table
2's ResNet-18/34 are option A, which "has no extra parameter compared to the plain
counterparts" (section 4.1): `create("resnet18", shortcut="A")` has plain-18's parameters,
`NUMBERS["plain18"]` (`OPTION_A_TWINS`). The same holds on CIFAR (section 4.2, option A), whose
Table 6 lists the ResNets' counts only; the plain nets' entries are their ResNets'.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Published:
    params: float | None
    multiply_adds: float | None
    source: str


_TORCHVISION = "torchvision model card"
_CIFAR = "He et al. 2015, Table 6 (params); multiply-adds recomputed from section 4.2"
_CIFAR_PLAIN = (
    "He et al. 2015: Table 6 lists the ResNets only; a plain net has its option-A ResNet's "
    "parameters (section 4.2); multiply-adds recomputed from section 4.2"
)
_RESNET = "He et al. 2015, Table 1 (multiply-adds); torchvision (params, shortcut option B)"
_PLAIN = (
    "He et al. 2015, Table 1 (multiply-adds); params: torchvision's resnet{0} less its three "
    "1x1 projections + BN, which option A and the plain net do without (section 4.1)"
)
_VGG = "Simonyan & Zisserman 2014, Table 2"
_GOOGLENET = (
    "Szegedy et al. 2014, Table 1 (params; the column sums to 6.8M); 1.5 G multiply-adds is the "
    "budget the net was designed to (section 1), not a count: Table 1's layers make 1.58 G"
)

# Table 6's ResNets: depth, parameters, multiply-adds (recomputed).
_CIFAR_TABLE_6 = (
    (20, 0.27e6, 40.6e6), (32, 0.46e6, 68.9e6), (44, 0.66e6, 97.2e6), (56, 0.85e6, 125.5e6),
    (110, 1.7e6, 252.9e6),
)

# Table 2's option-A ResNets and the plain nets whose parameters they have (section 4.1).
OPTION_A_TWINS = {"resnet18": "plain18", "resnet34": "plain34"}

NUMBERS: dict[str, Published] = {
    "lenet5": Published(60_000, None, "LeCun et al. 1998, section II.B"),
    "alexnet": Published(60e6, None, "Krizhevsky et al. 2012, section 1"),
    "alexnet_owt": Published(61_100_840, None, _TORCHVISION),
    **{f"vgg_{c}": Published(p, None, _VGG) for c, p in
       (("a", 133e6), ("a_lrn", 133e6), ("b", 133e6), ("c", 134e6), ("d", 138e6), ("e", 144e6))},
    **{f"vgg{d}": Published(p, None, _TORCHVISION) for d, p in
       ((11, 132_863_336), (13, 133_047_848), (16, 138_357_544), (19, 143_667_240))},
    **{f"vgg{d}_bn": Published(p, None, _TORCHVISION) for d, p in
       ((11, 132_868_840), (13, 133_053_736), (16, 138_365_992), (19, 143_678_248))},
    "googlenet": Published(6.8e6, 1.5e9, _GOOGLENET),
    "googlenet_torchvision": Published(6_624_904, None, _TORCHVISION),
    **{f"resnet{d}": Published(p, m, _RESNET) for d, p, m in (
        (18, 11_689_512, 1.8e9), (34, 21_797_672, 3.6e9), (50, 25_557_032, 3.8e9),
        (101, 44_549_160, 7.6e9), (152, 60_192_808, 11.3e9))},
    # 11,689,512 - (64*128 + 2*128) - (128*256 + 2*256) - (256*512 + 2*512); likewise for 34.
    "plain18": Published(11_515_688, 1.8e9, _PLAIN.format(18)),
    "plain34": Published(21_623_848, 3.6e9, _PLAIN.format(34)),
    **{f"cifar_{kind}{d}": Published(p, m, source) for d, p, m in _CIFAR_TABLE_6
       for kind, source in (("resnet", _CIFAR), ("plain", _CIFAR_PLAIN))},
    "cifar_resnet1202": Published(19.4e6, None, _CIFAR),
    "inception_v4": Published(42.7e6, None, "timm (Szegedy et al. 2016 give no count)"),
    "inception_v4_released": Published(42.7e6, None, "timm"),
    "inception_resnet_v2": Published(55.8e6, None, "timm (Szegedy et al. 2016 give no count)"),
}
