"""The model zoo: every architecture of the lecture, built by torchvision with `weights=None`.

`python -m workers.zoo` (or `convbench zoo`) lists them with parameters and GFLOPs at the native resolution.
Importing this module imports no torch: the registry is data, and torchvision's builder is looked up
when a model is built, so the orchestrator's planning and `--help` answer at once.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from workers.recipes import FAMILY_RECIPES, Recipe

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Arch:
    name: str
    family: str
    paper: str
    year: int
    native_size: int  # the paper's input resolution
    # The smallest input the torchvision model accepts (measured). ResNet and DenseNet end in an
    # adaptive pool and accept any size; 32 px is where their last stage is still 1x1, not padding.
    min_size: int
    builder: Callable[..., nn.Module]
    aux_min_size: int | None = None  # below this, auxiliary heads are switched off
    # Modules used in training only and dropped from the deployed model: torchvision's table counts
    # GoogLeNet without its two auxiliary classifiers (Inception v3's published weights keep AuxLogits).
    training_only: tuple[str, ...] = ()
    # The workers.tasks loop that trains it: "classification" for a network of this zoo; "classical" for
    # ILSVRC 2011's SIFT + Fisher vector + SVM pipeline, which has no network to build (workers.classical).
    task: str = "classification"

    @property
    def is_network(self) -> bool:
        return self.task == "classification"

    @property
    def recipe(self) -> Recipe:
        return FAMILY_RECIPES[self.family]

    def build(self, num_classes: int, input_size: int | None = None, dropout: float | None = None, *,
              init: str = "", zero_init_residual: bool = False) -> nn.Module:
        """The model; `init` and `zero_init_residual` are the recipe's (workers.recipes.Recipe.model_options)."""
        size = input_size or self.native_size
        if size < self.min_size:
            raise ValueError(f"{self.name} needs inputs of at least {self.min_size} px, got {size}")
        kwargs: dict[str, Any] = {"weights": None, "num_classes": num_classes}
        if self.family in ("googlenet", "inception"):
            kwargs["init_weights"] = True
            kwargs["aux_logits"] = self.has_aux(size)
        if dropout is not None and self.family in ("alexnet", "vgg", "googlenet", "inception"):
            kwargs["dropout"] = dropout
        if zero_init_residual and self.family == "resnet":  # torchvision's own switch; other families have no residual BN
            kwargs["zero_init_residual"] = True
        model = self.builder(**kwargs)
        if init:
            INITIALISERS[init](model)
        return model

    def has_aux(self, size: int) -> bool:
        return self.aux_min_size is not None and size >= self.aux_min_size


def kaiming_init(model: nn.Module) -> None:
    """He et al. (2015)'s initialisation, as torchvision gives VGG: conv weights N(0, 2 / fan_out), linear N(0, 0.01),
    biases 0, BN (1, 0). torchvision's AlexNet keeps PyTorch's default (uniform, gain 1/sqrt(3)), under which each
    of its eight BN-free ReLU layers shrinks the signal: from scratch at 63 px it stays at chance for 8 epochs."""
    from torch import nn

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
        else:
            continue
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)


INITIALISERS: dict[str, Callable[[nn.Module], None]] = {"kaiming": kaiming_init}  # keys: workers.recipes.INITS

ALEXNET = "ImageNet Classification with Deep Convolutional Neural Networks (Krizhevsky et al.)"
VGG = "Very Deep Convolutional Networks for Large-Scale Image Recognition (Simonyan & Zisserman)"
GOOGLENET = "Going Deeper with Convolutions (Szegedy et al.)"
INCEPTION = "Rethinking the Inception Architecture for Computer Vision (Szegedy et al.)"
RESNET = "Deep Residual Learning for Image Recognition (He et al.)"
DENSENET = "Densely Connected Convolutional Networks (Huang et al.)"

ARCHS: dict[str, Arch] = {}


def torchvision_model(name: str, **kwargs: Any) -> nn.Module:
    """torchvision's `name` model, built with `kwargs` (torchvision is imported by the first build)."""
    from torchvision import models

    return getattr(models, name)(**kwargs)


def _register(name: str, family: str, paper: str, year: int, native: int, minimum: int, **kw: Any) -> None:
    ARCHS[name] = Arch(name, family, paper, year, native, minimum, partial(torchvision_model, name), **kw)


_register("alexnet", "alexnet", ALEXNET, 2012, 224, 63)
for depth in (11, 13, 16, 19):
    for suffix in ("", "_bn"):
        _register(f"vgg{depth}{suffix}", "vgg", VGG, 2014, 224, 32)
_register("googlenet", "googlenet", GOOGLENET, 2014, 224, 15, aux_min_size=15, training_only=("aux1", "aux2"))
_register("inception_v3", "inception", INCEPTION, 2015, 299, 75, aux_min_size=299)
for depth in (18, 34, 50, 101, 152):
    _register(f"resnet{depth}", "resnet", RESNET, 2015, 224, 32)
for depth in (121, 161, 169, 201):
    _register(f"densenet{depth}", "densenet", DENSENET, 2016, 224, 32)


def no_network(name: str, **kwargs: Any) -> nn.Module:
    raise ValueError(f"{name} is not a network: workers.tasks.TASKS[{ARCHS[name].task!r}] trains it")


# The lecture's classical row: ILSVRC 2011's winner (25.8% top-5 error; AlexNet's 15.3% a year later).
# Native size: Sánchez et al. resized images to about 100,000 pixels; its SIFT grid scales with the input
# (workers.classical.recipe), and 16 px still holds a few of its patches.
ARCHS["sift_fv_svm"] = Arch(
    "sift_fv_svm", "classical", "Improving the Fisher Kernel for Large-Scale Image Classification (Perronnin et al. "
    "2010); Image Classification with the Fisher Vector (Sánchez et al. 2013)", 2011, 316, 16,
    partial(no_network, "sift_fv_svm"), task="classical")


def networks() -> list[str]:
    """The architectures that are networks (every one but the classical pipeline): R-CNN's backbones."""
    return [name for name, arch in ARCHS.items() if arch.is_network]


def get_arch(name: str) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(ARCHS)}") from None


def count_params(model: nn.Module, skip: tuple[str, ...] = ()) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if name.split(".")[0] not in skip)


def count_flops(model: nn.Module, size: int) -> float:
    """FLOPs of one forward pass on one image, by torch's counter (a multiply-add counts as 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    param = next(model.parameters())
    x = torch.zeros(1, 3, size, size, device=param.device, dtype=param.dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return float(counter.get_total_flops())


def zoo_table(num_classes: int = 1000, names: list[str] | None = None) -> list[dict[str, Any]]:
    rows = []
    for arch in map(get_arch, names or networks()):
        if not arch.is_network:
            continue  # nothing to count: its parameters and FLOPs depend on the data (workers.classical)
        model = arch.build(num_classes)
        flops = count_flops(model, arch.native_size)
        rows.append({
            "arch": arch.name, "family": arch.family, "year": arch.year, "input": arch.native_size,
            "min_input": arch.min_size, "params_M": count_params(model, arch.training_only) / 1e6,
            "GMACs": flops / 2e9,  # torchvision's "GFLOPS" column counts a multiply-add once
            "GFLOPs": flops / 1e9, "paper": arch.paper,
        })
    return rows


DESCRIPTION = ("List every architecture with parameters and compute at its native resolution. GMACs counts a "
               "multiply-add once (torchvision's published 'GFLOPS'); GFLOPs counts it twice "
               "(torch.utils.flop_counter).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The zoo table's options (`python -m workers.zoo`, `convbench zoo`); no torch until it runs."""
    parser.add_argument("--classes", type=int, default=1000, help="classifier width (default 1000, as ImageNet)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--only", type=_arch_names, default=[], metavar="ARCH[,ARCH]",
                        help="only these architectures (default: all)")


def _arch_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ARCHS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown architecture {unknown[0]!r}; known: {', '.join(ARCHS)}")
    return names


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    table = pd.DataFrame(zoo_table(args.classes, args.only))
    if args.json:
        print(table.to_json(orient="records", indent=2))
    else:
        print(table.drop(columns="paper").to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.zoo", description=DESCRIPTION,
                                     epilog="example: %(prog)s --classes 10 --only alexnet,resnet50")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
