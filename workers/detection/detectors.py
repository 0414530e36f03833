"""The detector registry: which detector a job's arch names, what of the recipe it takes, what builds it.

A detection job's arch is a model-zoo backbone, which names R-CNN over it, or one of torchvision's
Faster R-CNN models. Each detector is one entry of data: its kind (recorded with the result), the
archs that name it, its recipe defaults over DetectorRecipe's, the recipe values it refuses, and its
builder as "module:Class". Every builder makes a `Detector`: one shape, which the one training loop
(workers.detection.loop) drives. A new detector is an entry here and a module with its class.

Importing this module imports no torch, OpenCV or scikit-learn: the orchestrator asks it a
detector's kind and checks a suite's recipes against it while planning.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from workers.tasks import entry_point
from workers.zoo import networks

if TYPE_CHECKING:
    import torch

    from workers.context import RunContext


@dataclass
class ImageDetections:
    """One image's detections, and how much work the network did for them."""

    boxes: torch.Tensor  # N x 4
    scores: torch.Tensor  # N
    labels: torch.Tensor  # N, 1..C
    items: int  # regions (R-CNN) or images (Faster R-CNN) the network processed


class Detector(Protocol):
    """What a builder makes: `prepare`, then per epoch `epoch(...)` and `loss(batch)`; `finish`, then `detect`."""

    unit: str  # what its throughput counts: "regions" or "images"
    proposal_method: str  # where its test-time boxes come from
    comparisons: tuple[str, ...]  # other proposal methods also scored on val after training
    other_scorers: tuple[str, ...]  # other scorers also scored on val, on the same network and boxes
    classifier: str | None  # what scores its regions, where the recipe chooses it (R-CNN); else None
    model: torch.nn.Module

    def prepare(self, ctx: RunContext | None = None) -> dict[str, Any]: ...

    def epoch(self, generator: torch.Generator, rank: int = 0,
              world_size: int = 1) -> tuple[int, Iterator[Any]]: ...

    def loss(self, batch: Any, forward: torch.nn.Module | None = None) -> tuple[torch.Tensor, int]: ...

    def finish(self) -> dict[str, Any]: ...

    def flops(self) -> float | None: ...

    def scored_by(self, scorer: str) -> AbstractContextManager[None]: ...

    def detect(self, image: torch.Tensor, method: str | None = None) -> ImageDetections: ...

    def proposal_stats(self, dataset: Any) -> dict[str, dict[str, float]]: ...


Builder = type[Detector]  # (arch, input_size, splits, recipe, device, proposal cache) -> Detector


@dataclass(frozen=True)
class DetectorEntry:
    kind: str  # the result's metrics.detector and the checkpoint's "kind"
    archs: tuple[str, ...]  # the job archs that name this detector
    build: str  # "module:Class", a Builder; imported when a job builds one
    defaults: dict[str, Any] = field(default_factory=dict)  # over DetectorRecipe's defaults
    # Recipe fields whose values this detector narrows: field -> (the values it takes, the message that refuses
    # any other, formatted with `value`). workers.detection.recipe.parse_recipe applies both.
    allowed: dict[str, tuple[tuple[Any, ...], str]] = field(default_factory=dict)

    def builder(self) -> Builder:
        return entry_point(self.build)


# torchvision.models.detection's Faster R-CNN builders (Ren et al., 2015), trained from scratch here.
FASTER_RCNN_ARCHS = ("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_mobilenet_v3_large_fpn",
                     "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2")

DETECTORS: dict[str, DetectorEntry] = {
    # R-CNN (Girshick et al., 2014) over any zoo backbone: the recipe's defaults are the paper's.
    "rcnn": DetectorEntry("rcnn", tuple(networks()), "workers.detection.regions:RegionDetector"),
    # Faster R-CNN counts its batch in images and follows torchvision's reference (NMS 0.5, score >= 0.05);
    # it scores with its own softmax head: the SVMs are R-CNN's option.
    "faster_rcnn": DetectorEntry(
        "faster_rcnn", FASTER_RCNN_ARCHS, "workers.detection.faster_rcnn:FasterRCNNDetector",
        defaults={"batch_size": 4, "lr": 0.01, "weight_decay": 1e-4, "nms_iou": 0.5, "score_thresh": 0.05},
        allowed={"classifier": (("softmax",), "{value!r} is R-CNN's option; faster_rcnn scores with softmax")}),
}


def detector_for(arch: str) -> DetectorEntry:
    for entry in DETECTORS.values():
        if arch in entry.archs:
            return entry
    raise KeyError(f"unknown detector arch {arch!r}: a model-zoo backbone for R-CNN ({', '.join(networks())}) "
                   f"or one of {', '.join(FASTER_RCNN_ARCHS)}")


def detector_kind(arch: str) -> str:
    return detector_for(arch).kind


def detector_archs() -> list[str]:
    return [arch for entry in DETECTORS.values() for arch in entry.archs]
