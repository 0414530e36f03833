"""The detector's recipe: the keys of a job's recipe table it reads, typed, with the papers' defaults.

A job's recipe dict may be a classification recipe or carry keys for other tasks: keys that are
not fields here are ignored; keys that are fields are type-checked, naming the field.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from workers.detection.detectors import DETECTORS, detector_kind
from workers.recipes import Recipe
from workers.typed import ConfigError, from_dict

# R-CNN's class scores: "softmax" scores regions with the fine-tuned network itself (what Fast R-CNN later
# adopted); "svm" with one linear SVM per class on the network's features, as the R-CNN paper did.
CLASSIFIERS = ("softmax", "svm")


@dataclass(frozen=True)
class DetectorRecipe:
    epochs: int = 10
    # R-CNN: regions per step (the paper: 32 positive + 96 background); Faster R-CNN: images per step.
    batch_size: int = 128
    lr: float = 0.01  # per step at this batch size: the detector does not rescale it
    momentum: float = 0.9
    weight_decay: float = 5e-4  # the paper's, as AlexNet's
    schedule: str = "step"  # step | cosine, as workers.recipes.Recipe
    milestones: tuple[float, ...] = (2 / 3,)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    dropout: float | None = None  # None: the architecture's own
    max_steps_per_epoch: int = 0  # 0: one pass over the positive regions (R-CNN) or images (Faster R-CNN)

    # Proposals (R-CNN). Training regions are the `train_proposals` methods' boxes (default: the
    # test-time method) plus every ground-truth box, as in the paper.
    proposals: str = "selective_search"
    proposal_options: dict[str, Any] = field(default_factory=dict)  # options of `proposals`, e.g. {mode = "quality"}
    max_proposals: int = 2000
    train_proposals: tuple[str, ...] = ()
    compare_proposals: tuple[str, ...] = ("sliding_window",)  # also scored on val, at the same count, after training
    chunk_images: int = 256  # a step's regions come from one chunk of this many images, each decoded once

    # Region labels and box regression (R-CNN).
    fg_iou: float = 0.5
    fg_fraction: float = 0.25  # 32 of 128
    bbox_iou: float = 0.6
    bbox_ridge: float = 0.01
    bbox_per_class: int = 2000  # regions per class the box regressor is fitted on
    context_padding: float = 16.0  # pixels at the paper's 227-pixel warp

    # Class scores (R-CNN): the fine-tuned network's softmax, or the paper's linear SVMs on its features,
    # one per class, fitted after fine-tuning with hard-negative mining (workers.detection.svm).
    classifier: str = "softmax"  # softmax | svm
    svm_c: float = 1e-3  # the paper's C, for features scaled to a mean norm of 20 as it did
    svm_mining_rounds: int = 1  # passes over the training images mining hard negatives (the paper: 1)

    # Detection and scoring.
    nms_iou: float = 0.3
    score_thresh: float = 0.01
    max_detections: int = 100
    eval_batch: int = 256  # regions per forward pass at evaluation
    eleven_point: bool = False  # VOC2007's 11-point AP instead of all-point
    amp: bool = True  # bf16 autocast on GPU
    channels_last: bool = True  # on GPU
    proposal_cache: str = ""  # "": <storage root>/proposal_cache, shared by the jobs there

    def validate(self, where: str) -> None:
        for name in ("batch_size", "max_proposals", "eval_batch", "max_detections", "chunk_images", "bbox_per_class"):
            if getattr(self, name) < 1:
                raise ValueError(f"{where}.{name}: must be at least 1, got {getattr(self, name)}")
        if self.epochs < 0:
            raise ValueError(f"{where}.epochs: must not be negative, got {self.epochs}")
        for name in ("fg_iou", "fg_fraction", "bbox_iou", "nms_iou"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{where}.{name}: must lie in (0, 1], got {getattr(self, name)}")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"{where}.classifier: one of {', '.join(CLASSIFIERS)}, got {self.classifier!r}")
        if self.svm_c <= 0:
            raise ValueError(f"{where}.svm_c: must be positive, got {self.svm_c}")
        if self.svm_mining_rounds < 1:
            raise ValueError(f"{where}.svm_mining_rounds: at least 1 (the paper mined one pass), "
                             f"got {self.svm_mining_rounds}")
        if self.schedule not in ("step", "cosine"):
            raise ValueError(f"{where}.schedule: step or cosine, got {self.schedule!r}")

    def lr_factor(self, progress: float) -> float:
        """The learning-rate multiplier at `progress` epochs, by the classification recipes' schedule."""
        return Recipe(epochs=self.epochs, schedule=self.schedule, milestones=self.milestones, gamma=self.gamma,
                      warmup_epochs=self.warmup_epochs).lr_factor(progress)

    def positives_per_batch(self) -> int:
        return max(1, round(self.batch_size * self.fg_fraction))

    def to_dict(self) -> dict[str, Any]:
        """As JSON holds it (tuples as lists), so a stored recipe reads back the same."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def parse_recipe(recipe: dict[str, Any], kind: str, where: str = "recipe") -> DetectorRecipe:
    """The recipe of a detector of `kind`: its defaults (workers.detection.detectors), then `recipe`'s fields."""
    entry = DETECTORS[kind]
    known = {f.name for f in fields(DetectorRecipe)}
    parsed = from_dict(DetectorRecipe, {**entry.defaults, **{k: v for k, v in recipe.items() if k in known}}, where)
    for name, (values, refusal) in entry.allowed.items():
        if (value := getattr(parsed, name)) not in values:
            raise ConfigError(f"{where}.{name}: {refusal.format(value=value)}")
    return parsed


def resolve_recipe(changes: dict[str, Any], arch: str, where: str = "recipe") -> dict[str, Any]:
    """What a detection job stores as its recipe: every field, resolved with the arch's detector's defaults,
    so that its identity, and what it shows (its epochs), are the recipe it trains by."""
    return parse_recipe(changes, detector_kind(arch), where).to_dict()
