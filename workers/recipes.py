"""Training recipes as data: the papers' and torchvision's reference settings, scaled by a suite.

Schedules are written in fractions of the run, so one recipe serves a 90-epoch ImageNet
run and a two-epoch smoke run alike. The learning rate is given for a batch of 256
and scaled linearly with the batch actually used (Goyal et al., 2017).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

INITS = ("", "kaiming")  # see Recipe.init


@dataclass(frozen=True)
class Recipe:
    epochs: int = 90
    batch_size: int = 256
    lr: float = 0.1  # for a batch of 256
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    schedule: str = "step"  # step | cosine
    milestones: tuple[float, ...] = (1 / 3, 2 / 3)  # fractions of the run where lr *= gamma
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    dropout: float | None = None  # None: the architecture's own default
    aux_weight: float = 0.0  # auxiliary classifiers' loss weight (GoogLeNet 0.3, Inception v3 0.4)
    crop_scale: tuple[float, ...] = (0.08, 1.0)  # RandomResizedCrop's area range (Inception-style)
    hflip: bool = True
    eval_crop: float = 0.875  # centre crop after resizing to size / eval_crop (224 of 256)
    ten_crop: bool = False  # evaluate on 10 crops (AlexNet/VGG style)
    max_steps_per_epoch: int = 0  # 0: whole epochs; else a fixed budget of steps (smoke runs)
    amp: bool = True  # bf16 autocast where it pays: a GPU, or a CPU with AMX (workers.context.bf16_pays)
    channels_last: bool = True  # likewise
    compile: bool = False  # torch.compile the model
    num_workers: int = 0  # data loader processes
    # How the model is built (workers.zoo.Arch.build), part of the recipe because the papers chose them:
    init: str = ""  # "": the builder's own initialisation; "kaiming": He et al. 2015 (conv fan_out, linear N(0, 0.01))
    zero_init_residual: bool = False  # ResNet: each block's last BN gamma starts at 0 (Goyal et al., 2017)

    def validate(self, where: str) -> None:
        if self.init not in INITS:
            raise ValueError(f"{where}.init: one of {', '.join(repr(i) for i in INITS)}, got {self.init!r}")

    def model_options(self) -> dict[str, Any]:
        """The keyword arguments of workers.zoo.Arch.build this recipe sets."""
        return {"init": self.init, "zero_init_residual": self.zero_init_residual}

    def scaled_lr(self) -> float:
        return self.lr * self.batch_size / 256

    def lr_factor(self, progress: float) -> float:
        """The multiplier of the base learning rate at `progress` (epochs done, fractional)."""
        if self.warmup_epochs and progress < self.warmup_epochs:
            return (progress + 1e-3) / self.warmup_epochs
        frac = progress / max(self.epochs, 1e-9)
        if self.schedule == "cosine":
            w = self.warmup_epochs / max(self.epochs, 1e-9)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (frac - w) / max(1 - w, 1e-9))))
        return self.gamma ** sum(frac >= m for m in self.milestones)

    def override(self, changes: dict[str, Any], where: str = "recipe") -> Recipe:
        """This recipe with `changes`; an unknown field or a value of the wrong type raises ConfigError."""
        from workers.typed import from_dict

        return from_dict(Recipe, {**self.to_dict(), **changes}, where)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"], d["crop_scale"] = list(self.milestones), list(self.crop_scale)
        return d



# AlexNet (Krizhevsky et al., 2012): SGD 0.9, wd 5e-4, lr 0.01 divided by 10 when val error plateaus
# (three times in ~90 epochs); dropout 0.5 in the first two FC layers.
# The paper's 0.01 was for its batch of 128: 0.02 for 256. It initialised from N(0, 0.01) (biases 1), which
# trains only with its local response normalisation; torchvision's AlexNet has no LRN, so it gets He et al.'s
# initialisation, as torchvision gives VGG (workers.zoo.kaiming_init).
ALEXNET = Recipe(lr=0.02, weight_decay=5e-4, milestones=(1 / 3, 2 / 3), dropout=0.5, ten_crop=False, init="kaiming")
# VGG (Simonyan & Zisserman, 2015): as AlexNet, lr 0.01, wd 5e-4, dropout 0.5, batch 256.
VGG = Recipe(lr=0.01, weight_decay=5e-4, milestones=(1 / 3, 2 / 3), dropout=0.5)
# GoogLeNet (Szegedy et al., 2015): SGD 0.9, lr decreased 4% every 8 epochs, aux losses weighted 0.3,
# dropout 0.4 before the classifier (torchvision: 0.2 main, 0.7 aux).
GOOGLENET = Recipe(lr=0.1, weight_decay=1e-4, milestones=tuple(i / 30 for i in range(1, 30)), gamma=0.96,
                   aux_weight=0.3, dropout=0.4)
# Inception v3 (Szegedy et al., 2016): label smoothing 0.1, aux head weighted 0.4 as in torchvision's
# reference; the paper's RMSProp is replaced by the reference script's SGD.
# torchvision draws its convolutions and its classifier from a truncated N(0, 0.1): on 2048 pooled features the
# first logits have a std near 3 (a first loss of 5.6 nats on 10 classes, against ln 10 = 2.3), and from scratch
# it stays near chance for 8 short epochs; He et al.'s initialisation starts the classifier at N(0, 0.01).
INCEPTION_V3 = Recipe(lr=0.1, weight_decay=1e-4, schedule="cosine", warmup_epochs=0.0,
                      label_smoothing=0.1, aux_weight=0.4, dropout=0.5, init="kaiming")
# ResNet (He et al., 2016) and torchvision's reference: lr 0.1, wd 1e-4, /10 every 30 of 90 epochs.
# Each residual block's last BN gamma starts at 0 (Goyal et al., 2017, sec. 5.1): the network starts as its
# shallow identity path, which lets ResNet-50 learn from scratch at 32 px as ResNet-18 does.
RESNET = Recipe(lr=0.1, weight_decay=1e-4, milestones=(1 / 3, 2 / 3), zero_init_residual=True)
# DenseNet (Huang et al., 2017): lr 0.1, wd 1e-4, Nesterov momentum, /10 at 50% and 75% of training.
DENSENET = Recipe(lr=0.1, weight_decay=1e-4, nesterov=True, milestones=(0.5, 0.75))

FAMILY_RECIPES: dict[str, Recipe] = {
    "alexnet": ALEXNET, "vgg": VGG, "googlenet": GOOGLENET, "inception": INCEPTION_V3,
    "resnet": RESNET, "densenet": DENSENET,
}
