"""R-CNN's per-class linear SVMs on the fine-tuned network's features, trained with hard-negative mining.

As in the paper (section 2.3, appendix B) and its released training code:
- positives of a class are its ground-truth boxes; negatives are regions with IoU < 0.3 with every
  ground-truth box of that class; regions in between are left out;
- features are scaled to a mean norm of 20, C = 0.001, the positives' loss weighs 2 and the bias is
  a feature of value 10 (liblinear's -B); hinge loss;
- hard negatives are mined in passes over the training images, keeping a cache of negatives per
  class: a negative that scores above -1 (inside the margin) joins it, every RETRAIN_EVERY new ones
  the SVM is fitted again and negatives scoring below -1.2 leave it. The first images meet an SVM
  of zeros, so all their negatives join. The paper found one pass enough.

scikit-learn's LinearSVC (liblinear, as the paper used) fits each SVM.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.svm import LinearSVC
from torch.utils.data import Dataset
from torchvision.ops import box_iou

NEGATIVE_IOU = 0.3
FEATURE_NORM = 20.0
POSITIVE_WEIGHT = 2.0
BIAS_FEATURE = 10.0
HARD_MARGIN = -1.0001  # a negative scoring above this violates the margin
EASY_MARGIN = -1.2  # below this a cached negative no longer shapes the SVM
RETRAIN_EVERY = 2000  # new hard negatives of a class between fits

# (image uint8 3 x H x W, boxes K x 4) -> features K x D on the CPU
Features = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class ClassCache:
    """One class's training set: its positives, and the negatives mined so far, keyed by (image, region)."""

    positives: list[torch.Tensor] = field(default_factory=list)  # blocks of features
    negatives: list[torch.Tensor] = field(default_factory=list)  # blocks of features, rows in the order of keys
    keys: list[tuple[int, int]] = field(default_factory=list)
    fresh: int = 0  # negatives added since the last fit
    fits: int = 0


def fit_linear_svm(positives: torch.Tensor, negatives: torch.Tensor, c: float) -> tuple[torch.Tensor, float]:
    """One class's SVM, the paper's liblinear settings: weight (D,) and bias."""
    x = torch.cat([positives, negatives]).numpy()
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    svm = LinearSVC(C=c, loss="hinge", dual=True, class_weight={1: POSITIVE_WEIGHT, 0: 1.0},
                    intercept_scaling=BIAS_FEATURE, max_iter=10_000, random_state=0)
    svm.fit(x, y)
    return torch.from_numpy(svm.coef_[0]).float(), float(svm.intercept_[0])


def train_svms(dataset: Dataset, regions: list[torch.Tensor], features: Features, num_classes: int, c: float,
               rounds: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """SVMs for classes 1..C from image i's candidate `regions[i]`: weight (C+1) x D and bias (C+1), the feature
    scale folded into the weight. Row 0 (background) and any class without a positive never score: bias -inf."""
    start = time.perf_counter()
    caches = [ClassCache() for _ in range(num_classes + 1)]
    for i in range(len(dataset)):
        image, target = dataset[i]
        if len(target["boxes"]):
            found = features(image, target["boxes"].float())
            for k in target["labels"].unique().tolist():
                caches[k].positives.append(found[target["labels"] == k])
    trained = [k for k in range(1, num_classes + 1) if caches[k].positives]
    if not trained:
        raise ValueError("the SVMs need ground-truth boxes in the training split; it has none")
    # the paper's feature scaling, measured here on the positives: one C then suits every backbone
    positives = {k: torch.cat(caches[k].positives) for k in trained}
    scale = FEATURE_NORM / float(torch.cat(list(positives.values())).norm(dim=1).mean())
    weight = torch.zeros(num_classes + 1, positives[trained[0]].shape[1])
    bias = torch.full((num_classes + 1,), float("-inf"))
    bias[trained] = 0.0  # the first images meet an SVM of zeros: every negative of theirs is hard

    def fit(k: int) -> None:
        cache = caches[k]
        negatives = torch.cat(cache.negatives) if cache.negatives else torch.zeros(0, weight.shape[1])
        if len(negatives):
            w, b = fit_linear_svm(positives[k] * scale, negatives * scale, c)
            weight[k], bias[k] = w * scale, b
            keep = negatives @ weight[k] + bias[k] >= EASY_MARGIN
            negatives, cache.keys = negatives[keep], [key for key, kept in zip(cache.keys, keep.tolist()) if kept]
        cache.negatives, cache.fresh, cache.fits = [negatives], 0, cache.fits + 1

    for _ in range(rounds):
        for i in range(len(dataset)):
            image, target = dataset[i]
            boxes = regions[i]
            if not len(boxes):
                continue
            found = features(image, boxes)
            margins = found @ weight.T + bias
            overlap = box_iou(boxes, target["boxes"].float()) if len(target["boxes"]) else None
            for k in trained:
                negative = torch.ones(len(boxes), dtype=torch.bool)
                mine = target["labels"] == k
                if overlap is not None and mine.any():
                    negative = overlap[:, mine].max(dim=1).values < NEGATIVE_IOU
                cache = caches[k]
                known = set(cache.keys)
                hard = [j for j in (negative & (margins[:, k] > HARD_MARGIN)).nonzero().squeeze(1).tolist()
                        if (i, j) not in known]
                if hard:
                    cache.negatives.append(found[hard].clone())  # a copy: a view would keep all of `found`
                    cache.keys += [(i, j) for j in hard]
                    cache.fresh += len(hard)
                if cache.fresh >= RETRAIN_EVERY:
                    fit(k)
        for k in trained:
            if caches[k].fresh or not caches[k].fits:
                fit(k)
    stats = {"svm_classes": len(trained), "svm_positives": sum(len(p) for p in positives.values()),
             "svm_negatives": sum(len(caches[k].keys) for k in trained),
             "svm_fits": sum(caches[k].fits for k in trained), "svm_seconds": time.perf_counter() - start}
    return weight, bias, stats
