"""R-CNN's training and detection on a dataset: labelled regions, the paper's mini-batches, per-image detection.

Every training image's regions (proposals plus its ground-truth boxes) are labelled once:
IoU >= fg_iou with a ground-truth box makes a region that box's class, anything else
background. A mini-batch samples positives (a quarter: 32 of 128 in the paper) and background
uniformly. Images are visited in chunks, each decoded once, so that a dataset on disk is not
decoded again for every region.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.ops import box_iou

from workers.context import RunContext
from workers.datasets.base import Splits
from workers.detection.detectors import ImageDetections
from workers.detection.map_metrics import proposal_recall, recall_by_count
from workers.detection.proposals import ProposalCache, Proposals, get_method
from workers.detection.rcnn import (
    BOX_CODER,
    RCNN,
    detect,
    fit_bbox_regressors,
    normalise,
    warp_regions,
)
from workers.detection.recipe import DetectorRecipe
from workers.detection.svm import train_svms
from workers.zoo import count_flops


@dataclass
class ImageRegions:
    boxes: torch.Tensor  # K x 4: ground truth first, then proposals
    labels: torch.Tensor  # K: 0 background, else the class of the box it overlaps most
    overlap: torch.Tensor  # K: IoU with that box
    deltas: torch.Tensor  # K x 4: the paper's regression targets towards that box


def hwc(image: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(image.permute(1, 2, 0).numpy())


def label_regions(boxes: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor, fg_iou: float) -> ImageRegions:
    if len(gt_boxes) == 0:
        zeros = torch.zeros(len(boxes))
        return ImageRegions(boxes, torch.zeros(len(boxes), dtype=torch.int64), zeros, torch.zeros(len(boxes), 4))
    overlap, match = box_iou(boxes, gt_boxes).max(dim=1)
    labels = torch.where(overlap >= fg_iou, gt_labels[match], torch.zeros_like(match))
    return ImageRegions(boxes, labels, overlap, BOX_CODER.encode_single(gt_boxes[match], boxes))


class RegionDetector:
    """R-CNN on one dataset, a workers.detection.detectors.Detector: `prepare`, then per epoch `epoch(...)` and
    `loss(batch)`; `finish`, then `detect`."""

    unit = "regions"

    def __init__(self, arch: str, input_size: int, splits: Splits, recipe: DetectorRecipe, device: torch.device,
                 cache: ProposalCache):
        self.splits, self.recipe, self.device, self.cache = splits, recipe, device, cache
        if get_method(recipe.proposals).needs_ground_truth:
            raise ValueError(f"recipe.proposals: {recipe.proposals!r} reads the ground truth; it can make training "
                             "regions (train_proposals) but not test-time proposals")
        for name in recipe.train_proposals:
            get_method(name)
        for name in recipe.compare_proposals:
            if get_method(name).needs_ground_truth:
                raise ValueError(f"recipe.compare_proposals: {name!r} reads the ground truth; "
                                 "it cannot propose at test time")
        self.model = RCNN(arch, splits.num_classes, input_size, dropout=recipe.dropout,
                          classifier=recipe.classifier).to(device)
        cuda_layout = recipe.channels_last and device.type == "cuda"
        self.memory_format = torch.channels_last if cuda_layout else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.regions: list[ImageRegions] = []
        self.proposal_method = recipe.proposals
        self.classifier = recipe.classifier
        # other methods scored on val after training, at the same proposal budget
        self.comparisons = tuple(m for m in dict.fromkeys(recipe.compare_proposals) if m != recipe.proposals)

    # --- proposals ---------------------------------------------------------------------------------

    def options(self, method: str) -> dict[str, Any]:
        return dict(self.recipe.proposal_options) if method == self.recipe.proposals else {}

    def proposals(self, image: torch.Tensor, method: str, gt_boxes: torch.Tensor | None = None) -> Proposals:
        budget = self.recipe.max_proposals
        if method in self.comparisons:  # compared at the main method's count on this very image
            budget = len(self.proposals(image, self.proposal_method).boxes)
        gt = gt_boxes.numpy() if gt_boxes is not None else None
        return self.cache.get(hwc(image), method, budget, self.options(method), gt)

    # --- training ----------------------------------------------------------------------------------

    def prepare(self, ctx: RunContext | None = None) -> dict[str, Any]:
        """Label every training region once (proposals come from the cache after the first run).

        On several ranks each first computes its shard of the proposals into the shared cache: the work is
        split, and every rank then labels the same regions from the same boxes, so their batches agree.
        """
        if ctx is not None and ctx.world_size > 1:
            for i in ctx.shard(range(len(self.splits.train))):
                self._label_image(i)
            ctx.barrier()
        self.regions = [self._label_image(i) for i in range(len(self.splits.train))]
        positives = sum(int((r.labels > 0).sum()) for r in self.regions)
        total = sum(len(r.labels) for r in self.regions)
        return {"train_regions": total, "train_positives": positives, "train_proposals": list(self.train_methods)}

    @property
    def train_methods(self) -> tuple[str, ...]:
        return self.recipe.train_proposals or (self.recipe.proposals,)

    def _label_image(self, i: int) -> ImageRegions:
        image, target = self.splits.train[i]
        found = [target["boxes"].float()]
        found += [torch.as_tensor(self.proposals(image, m, target["boxes"]).boxes) for m in self.train_methods]
        return label_regions(torch.cat(found), target["boxes"].float(), target["labels"], self.recipe.fg_iou)

    def _plan(self, generator: torch.Generator) -> list[tuple[list[int], int]]:
        """This epoch's chunks of images, each with its number of steps: one pass over the positives."""
        order = torch.randperm(len(self.regions), generator=generator).tolist()
        per_step = self.recipe.positives_per_batch()
        plan = []
        for start in range(0, len(order), self.recipe.chunk_images):
            chunk = order[start:start + self.recipe.chunk_images]
            positives = sum(int((self.regions[i].labels > 0).sum()) for i in chunk)
            if positives:  # a chunk without objects would give background-only batches, which the paper never uses
                plan.append((chunk, math.ceil(positives / per_step)))
        cap = self.recipe.max_steps_per_epoch
        if cap:
            kept, left = [], cap
            for chunk, steps in plan:
                if left > 0:
                    kept.append((chunk, min(steps, left)))
                    left -= steps
            plan = kept
        return plan

    def epoch(self, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> tuple[int, Iterator[Any]]:
        """This epoch's step count and this rank's share of each step's batch.

        Every rank draws the same batches (one generator) and keeps every world_size-th region of each, so
        the ranks' steps match and DDP's averaged gradient is that of the one-worker batch.
        """
        plan = self._plan(generator)
        return sum(steps for _, steps in plan), self._batches(plan, generator, rank, world_size)

    def _batches(self, plan: list[tuple[list[int], int]], generator: torch.Generator, rank: int,
                 world_size: int) -> Iterator[Any]:
        n_pos = self.recipe.positives_per_batch()
        n_bg = self.recipe.batch_size - n_pos
        for chunk, steps in plan:
            images = [normalise(self.splits.train[i][0].to(self.device)) for i in chunk]
            owner = torch.cat([torch.full((len(self.regions[i].labels),), j) for j, i in enumerate(chunk)])
            boxes = torch.cat([self.regions[i].boxes for i in chunk])
            labels = torch.cat([self.regions[i].labels for i in chunk])
            positives, background = torch.nonzero(labels > 0).squeeze(1), torch.nonzero(labels == 0).squeeze(1)
            positives = positives[torch.randperm(len(positives), generator=generator)]
            for step in range(steps):
                # positives in turn, so the epoch sees each once; background uniformly at random
                take = positives[torch.arange(step * n_pos, (step + 1) * n_pos) % len(positives)]
                if len(background):
                    take = torch.cat([take, background[torch.randint(len(background), (n_bg,), generator=generator)]])
                take = take[rank::world_size]
                yield self._warp(images, owner[take], boxes[take]), labels[take].to(self.device)

    def _warp(self, images: list[torch.Tensor], owner: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        size = self.model.input_size
        regions = torch.empty(len(boxes), 3, size, size, device=self.device)
        for j in owner.unique().tolist():
            mine = owner == j
            regions[mine.to(self.device)] = warp_regions(images[j], boxes[mine].to(self.device), size,
                                                         self.recipe.context_padding)
        return regions.contiguous(memory_format=self.memory_format)

    def loss(self, batch: Any, forward: torch.nn.Module | None = None) -> tuple[torch.Tensor, int]:
        regions, labels = batch
        return self.model.loss(regions, labels, forward), len(labels)

    def region_features(self, image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """The fine-tuned network's features (the input of its last layer) of boxes on a uint8 image, on the CPU."""
        return self.model.features(normalise(image.to(self.device)), boxes.to(self.device), self.recipe.eval_batch,
                                   self.recipe.context_padding).cpu()

    def finish(self) -> dict[str, Any]:
        """After fine-tuning: the box regressors, and the SVMs where the recipe scores with them."""
        self.model.eval()
        done = self._fit_bbox_regressors()
        if self.recipe.classifier == "svm":
            weight, bias, stats = train_svms(self.splits.train, [r.boxes for r in self.regions], self.region_features,
                                             self.splits.num_classes, self.recipe.svm_c, self.recipe.svm_mining_rounds)
            self.model.set_svms(weight.to(self.device), bias.to(self.device))
            done |= stats
        return done

    def _fit_bbox_regressors(self) -> dict[str, Any]:
        """Class-specific box regressors on regions with IoU >= bbox_iou, from the fine-tuned features."""
        generator = torch.Generator().manual_seed(0)
        picks: dict[int, list[tuple[int, int]]] = {}  # class -> (image, region) pairs
        for i, r in enumerate(self.regions):
            for k in torch.nonzero((r.overlap >= self.recipe.bbox_iou) & (r.labels > 0)).squeeze(1).tolist():
                picks.setdefault(int(r.labels[k]), []).append((i, k))
        per_image: dict[int, list[int]] = {}
        for items in picks.values():
            for j in torch.randperm(len(items), generator=generator)[: self.recipe.bbox_per_class].tolist():
                per_image.setdefault(items[j][0], []).append(items[j][1])
        features, labels, deltas = [], [], []
        for i, ks in sorted(per_image.items()):
            r, index = self.regions[i], torch.tensor(sorted(ks))
            features.append(self.region_features(self.splits.train[i][0], r.boxes[index]))
            labels.append(r.labels[index])
            deltas.append(r.deltas[index])
        if not features:
            return {"bbox_regression_regions": 0}
        weight = fit_bbox_regressors(torch.cat(features), torch.cat(labels), torch.cat(deltas),
                                     self.splits.num_classes, self.recipe.bbox_ridge)
        self.model.bbox_weight.copy_(weight.to(self.device))
        return {"bbox_regression_regions": int(sum(len(x) for x in labels))}

    def flops(self) -> float:
        """FLOPs of one region's forward pass (torch's counter: a multiply-add counts as 2)."""
        return count_flops(self.model.backbone, self.model.input_size)

    # --- detection ---------------------------------------------------------------------------------

    @property
    def other_scorers(self) -> tuple[str, ...]:
        """Scorers also evaluated after training: the softmax beside the SVMs, on the same network and boxes."""
        return ("softmax",) if self.model.scorer == "svm" else ()

    @contextlib.contextmanager
    def scored_by(self, scorer: str) -> Iterator[None]:
        before, self.model.scorer = self.model.scorer, scorer
        try:
            yield
        finally:
            self.model.scorer = before

    def detect(self, image: torch.Tensor, method: str | None = None) -> ImageDetections:
        self.model.eval()
        proposals = torch.as_tensor(self.proposals(image, method or self.recipe.proposals).boxes).to(self.device)
        probs, boxes = self.model.score_regions(normalise(image.to(self.device)), proposals, self.recipe.eval_batch,
                                                self.recipe.context_padding)
        found = detect(probs, boxes, tuple(image.shape[1:]), self.recipe.score_thresh, self.recipe.nms_iou,
                       self.recipe.max_detections)
        return ImageDetections(*(t.cpu() for t in found), items=len(proposals))

    def proposal_stats(self, dataset: Dataset) -> dict[str, dict[str, float]]:
        """Per method on `dataset`: recall at IoU 0.5 and 0.7 (difficult boxes left out), boxes and seconds per
        image."""
        stats = {}
        for method in (self.proposal_method, *self.comparisons):
            boxes, gt, seconds = [], [], []
            for i in range(len(dataset)):
                image, target = dataset[i]
                found = self.proposals(image, method)
                boxes.append(torch.as_tensor(found.boxes))
                gt.append(target["boxes"][~target["difficult"]])
                seconds.append(found.seconds)
            per_image, spent = float(np.mean([len(b) for b in boxes])), float(np.mean(seconds))
            stats[method] = {**proposal_recall(boxes, gt), "per_image": per_image, "seconds_per_image": spent,
                             "per_second": per_image / max(spent, 1e-9), **recall_by_count(boxes, gt)}
        return stats
