"""The modern comparison: torchvision's Faster R-CNN, from scratch, through the same training path as R-CNN.

Faster R-CNN (Ren et al., 2015) learns its proposals (a region proposal network) and pools
features from one pass over the whole image, where R-CNN runs the CNN once per proposal.
Selected by the job's arch (one of workers.detection.detectors.FASTER_RCNN_ARCHS); its input_size
is the shorter image side the model resizes to. No weights are loaded, backbone included.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torchvision.models import detection

from workers.datasets.base import Splits
from workers.detection.detectors import FASTER_RCNN_ARCHS, ImageDetections
from workers.detection.recipe import DetectorRecipe

if TYPE_CHECKING:
    from workers.detection.proposals import ProposalCache


def build_faster_rcnn(arch: str, num_classes: int, input_size: int, recipe: DetectorRecipe) -> nn.Module:
    if arch not in FASTER_RCNN_ARCHS:
        raise KeyError(f"{arch!r} is not a Faster R-CNN: one of {', '.join(FASTER_RCNN_ARCHS)}")
    return getattr(detection, arch)(
        weights=None, weights_backbone=None, num_classes=num_classes + 1,
        min_size=input_size, max_size=round(input_size * 1333 / 800),  # torchvision's 800/1333 proportion
        box_score_thresh=recipe.score_thresh, box_nms_thresh=recipe.nms_iou,
        box_detections_per_img=recipe.max_detections)


class FasterRCNNDetector:
    """A workers.detection.detectors.Detector, as regions.RegionDetector is, over whole images."""

    unit = "images"
    proposal_method = "rpn"  # its proposals are its own region proposal network's
    comparisons: tuple[str, ...] = ()
    other_scorers: tuple[str, ...] = ()
    classifier = None  # its own softmax head, always

    def __init__(self, arch: str, input_size: int, splits: Splits, recipe: DetectorRecipe, device: torch.device,
                 cache: ProposalCache | None = None):  # every builder's signature; the RPN needs no cache
        self.splits, self.recipe, self.device = splits, recipe, device
        self.model = build_faster_rcnn(arch, splits.num_classes, input_size, recipe).to(device)

    def prepare(self, ctx: Any = None) -> dict[str, Any]:
        return {"train_images": len(self.splits.train)}

    def epoch(self, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> tuple[int, Iterator[Any]]:
        """As R-CNN's: the same batches on every rank, each rank loading every world_size-th image of each."""
        order = torch.randperm(len(self.splits.train), generator=generator).tolist()
        batches = [order[i:i + self.recipe.batch_size] for i in range(0, len(order), self.recipe.batch_size)]
        batches = [b for b in batches if len(b) >= world_size]  # a last batch too small to give every rank an image
        if self.recipe.max_steps_per_epoch:
            batches = batches[: self.recipe.max_steps_per_epoch]
        return len(batches), (self._load(batch[rank::world_size]) for batch in batches)

    def _load(self, indices: list[int]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
        images, targets = [], []
        for i in indices:
            image, target = self.splits.train[i]
            images.append(image.to(self.device).float() / 255)
            targets.append({"boxes": target["boxes"].float().to(self.device),
                            "labels": target["labels"].to(self.device)})
        return images, targets

    def loss(self, batch: Any, forward: nn.Module | None = None) -> tuple[torch.Tensor, int]:
        images, targets = batch
        losses = (forward or self.model)(images, targets)  # RPN and box head: objectness, classification, regression
        return sum(losses.values()), len(images)

    def finish(self) -> dict[str, Any]:
        return {}

    def flops(self) -> None:
        return None  # per image and input-dependent (the RPN's proposal count); not one figure

    def scored_by(self, scorer: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # one scorer only (other_scorers is empty)

    @torch.no_grad()
    def detect(self, image: torch.Tensor, method: str | None = None) -> ImageDetections:
        self.model.eval()
        (found,) = self.model([image.to(self.device).float() / 255])
        return ImageDetections(found["boxes"].cpu(), found["scores"].float().cpu(), found["labels"].cpu(), items=1)

    def proposal_stats(self, dataset: Any) -> dict[str, dict[str, float]]:
        return {}
