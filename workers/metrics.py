"""Top-k error, accumulated over batches; where the errors are (per class, confusion); when they fell (time to
an error threshold)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

TOP_K = (1, 2, 3, 4, 5)
CLASS_K = (1, 5)  # the per-class errors a run records: ILSVRC's two
MOST_CONFUSED = 10  # (true, predicted) pairs a run lists
# Up to this many classes a run stores its confusion matrix whole (100 classes: 10,000 counts, tens of KB of
# JSON); above it only its non-zero off-diagonal cells (ImageNet's 1000 classes: the mistakes, not 10^6 zeros).
DENSE_CONFUSION_MAX = 100
# Validation top-1 errors whose first crossing a run records (DAWNBench's time to accuracy).
TIME_TO_THRESHOLDS = (0.5, 0.25, 0.10, 0.05)


class TopKCounter:
    """Counts, for each k, the images whose label is among the k highest scores.

    With `num_classes` it also counts per class: the confusion matrix of the best guess (true x predicted) and
    each class's top-k hits, by index_add_ on the batch's device: a few vector operations on the batch's N
    images, no loop over images or classes, nothing of size C^2 per batch.
    """

    def __init__(self, ks: tuple[int, ...] = TOP_K, num_classes: int | None = None):
        self.ks, self.correct, self.total = ks, torch.zeros(len(ks), dtype=torch.long), 0
        self.num_classes = num_classes
        c = num_classes or 0  # zeros from the start: a rank with an empty shard still has counts to all-reduce
        self.confusion = torch.zeros(c * c, dtype=torch.long)  # flat num_classes x num_classes, true x predicted
        self.class_hits = torch.zeros(len(ks), c, dtype=torch.long)

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        k = min(max(self.ks), logits.shape[1])
        top = logits.topk(k, dim=1).indices  # N x k, best first
        hit = (top == targets[:, None]).cumsum(dim=1).clamp(max=1)  # hit[:, j]: label in the top j+1
        for i, kk in enumerate(self.ks):
            self.correct[i] += int(hit[:, min(kk, k) - 1].sum())
        self.total += len(targets)
        if self.num_classes is not None:
            self._count_classes(top[:, 0], hit, targets)

    def _count_classes(self, best: torch.Tensor, hit: torch.Tensor, targets: torch.Tensor) -> None:
        c = self.num_classes or 0
        if self.confusion.device != targets.device:  # counted where the batch is: no copy to the host per batch
            self.confusion, self.class_hits = self.confusion.to(targets.device), self.class_hits.to(targets.device)
        # index_add_ touches the batch's N cells; a bincount would write all C^2 (10^6 at 1000 classes) per batch.
        self.confusion.index_add_(0, targets * c + best, torch.ones_like(targets, dtype=torch.long))
        columns = torch.tensor([min(kk, hit.shape[1]) - 1 for kk in self.ks], device=hit.device)
        self.class_hits.index_add_(1, targets, hit[:, columns].T.long())

    def errors(self) -> dict[int, float]:
        return {k: 1.0 - float(c) / max(self.total, 1) for k, c in zip(self.ks, self.correct)}

    def class_counts(self) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """The confusion matrix (true x predicted) and each k's per-class hits, as numpy on the CPU."""
        c = self.num_classes or 0
        hits = self.class_hits.cpu().numpy()
        return self.confusion.view(c, c).cpu().numpy(), {k: hits[i] for i, k in enumerate(self.ks)}


def _error_list(hits: np.ndarray, images: np.ndarray) -> list[float | None]:
    """1 - hits / images per class, None for a class without images (JSON has no NaN)."""
    return [None if n == 0 else round(1.0 - float(h) / float(n), 6) for h, n in zip(hits, images)]


def encode_confusion(confusion: np.ndarray) -> list[list[int]] | dict[str, Any]:
    """The matrix as JSON: whole up to DENSE_CONFUSION_MAX classes; above, its diagonal and its non-zero
    off-diagonal cells as [true, predicted, count] (leaderboard.error_analysis.confusion_array reads both)."""
    c = len(confusion)
    if c <= DENSE_CONFUSION_MAX:
        return confusion.astype(int).tolist()
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    true, predicted = np.nonzero(off)
    return {"num_classes": c, "diagonal": np.diag(confusion).astype(int).tolist(),
            "cells": np.stack([true, predicted, off[true, predicted]], axis=1).astype(int).tolist()}


def most_confused(confusion: np.ndarray, count: int = MOST_CONFUSED) -> list[dict[str, Any]]:
    """The `count` largest off-diagonal cells, largest first: true class, predicted class, images, and their
    share of the true class's images."""
    off = confusion.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    flat = off.ravel()
    cells = np.flatnonzero(flat)  # the mistakes: few beside C^2 cells
    order = cells[np.lexsort((cells, -flat[cells]))][:count]  # largest first, ties by cell index: deterministic
    rows = confusion.sum(axis=1)
    c = len(confusion)
    return [{"true": int(i // c), "predicted": int(i % c), "images": int(flat[i]),
             "share": round(float(flat[i]) / float(rows[i // c]), 6)} for i in order]


def class_report(confusion: np.ndarray, hits: dict[int, np.ndarray],
                 class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """What a run stores of where its errors are: `per_class` (images and top-1/top-5 error per class, in
    class order), `confusion` (encode_confusion) and `most_confused` pairs."""
    images = confusion.sum(axis=1)
    per_class: dict[str, Any] = {"images": images.astype(int).tolist()}
    for k, counts in hits.items():
        if k in CLASS_K:
            per_class[f"top{k}_err"] = _error_list(counts, images)
    report: dict[str, Any] = {"per_class": per_class, "confusion": encode_confusion(confusion),
                              "most_confused": most_confused(confusion)}
    if class_names is not None and len(class_names) == len(confusion):
        report["class_names"] = [str(name) for name in class_names]
    return report


def time_to(history: Sequence[dict[str, Any]], key: str = "val_top1_err",
            thresholds: Sequence[float] = TIME_TO_THRESHOLDS) -> list[dict[str, Any]]:
    """For each threshold, the first epoch whose `key` was at or below it, with the training seconds
    (`train_s`) and the run's elapsed seconds (`elapsed_s`, evaluation and checkpoints included) by then;
    epoch and times None for a threshold never reached."""
    out = []
    for threshold in thresholds:
        first = next((r for r in history if isinstance(r.get(key), (int, float)) and r[key] <= threshold), None)
        out.append({"metric": key, "threshold": threshold, "epoch": first.get("epoch") if first else None,
                    "train_s": first.get("train_s") if first else None,
                    "elapsed_s": first.get("elapsed_s") if first else None})
    return out
