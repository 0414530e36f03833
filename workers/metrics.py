"""Top-k error, accumulated over batches."""
from __future__ import annotations

import torch

TOP_K = (1, 2, 3, 4, 5)


class TopKCounter:
    """Counts, for each k, the images whose label is among the k highest scores."""

    def __init__(self, ks: tuple[int, ...] = TOP_K):
        self.ks, self.correct, self.total = ks, torch.zeros(len(ks), dtype=torch.long), 0

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        k = min(max(self.ks), logits.shape[1])
        top = logits.topk(k, dim=1).indices  # N x k, best first
        hit = (top == targets[:, None]).cumsum(dim=1).clamp(max=1)  # hit[:, j]: label in the top j+1
        for i, kk in enumerate(self.ks):
            self.correct[i] += int(hit[:, min(kk, k) - 1].sum())
        self.total += len(targets)

    def errors(self) -> dict[int, float]:
        return {k: 1.0 - float(c) / max(self.total, 1) for k, c in zip(self.ks, self.correct)}
