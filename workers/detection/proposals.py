"""Region proposals: pluggable methods, each computed once per image and cached on disk.

Every method takes an RGB image (H x W x 3, uint8) and returns float boxes x1, y1, x2, y2 in
pixels, best first where the method ranks them, at most `max_proposals` of them.

- `selective_search` (Uijlings et al., 2013) by OpenCV's contrib module, as R-CNN used it;
- `sliding_window`, the exhaustive baseline R-CNN replaced: several scales and aspect ratios,
  spaced so that the windows fill the same budget of proposals;
- `gt_jitter`, boxes scattered around the ground truth: training regions only, never at test time.

The cache key is a hash of the image's bytes, the method and its options (and, for methods
that read it, the ground truth), so any change of input recomputes and nothing else does.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ProposalFn = Callable[..., np.ndarray]  # (image, gt_boxes, max_proposals, **options) -> K x 4 float32


@dataclass(frozen=True)
class ProposalMethod:
    compute: ProposalFn
    defaults: dict[str, Any] = field(default_factory=dict)
    needs_ground_truth: bool = False  # such a method can make training regions only


def _as_boxes(boxes: Any) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def selective_search(image: np.ndarray, gt_boxes: np.ndarray | None, max_proposals: int,
                     mode: str = "fast", min_side: float = 4.0) -> np.ndarray:
    """OpenCV's selective search; "fast" is the mode R-CNN used, "quality" gives more, slower."""
    modes = {"fast": "switchToSelectiveSearchFast", "quality": "switchToSelectiveSearchQuality"}
    if mode not in modes:
        raise ValueError(f"selective_search mode: one of {sorted(modes)}, got {mode!r}")
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(image[:, :, ::-1]))  # OpenCV reads BGR
    getattr(search, modes[mode])()
    rects = _as_boxes(search.process())  # x, y, w, h, in the method's own ranking
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
    # slivers of a few pixels are segmentation noise, and warping them to the CNN's input is meaningless
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return boxes[sides >= min_side][:max_proposals]


def _windows(width: int, height: int, sizes: list[tuple[float, float]], stride: float) -> np.ndarray:
    """Every window of each size, stepped by `stride` times its own width and height."""
    found = []
    for w, h in sizes:
        xs = np.linspace(0, width - w, int((width - w) / (stride * w)) + 1)
        ys = np.linspace(0, height - h, int((height - h) / (stride * h)) + 1)
        x1, y1 = (a.ravel() for a in np.meshgrid(xs, ys))
        found.append(np.stack([x1, y1, x1 + w, y1 + h], axis=1))
    return _as_boxes(np.concatenate(found))


def sliding_window(image: np.ndarray, gt_boxes: np.ndarray | None, max_proposals: int,
                   scales: tuple[float, ...] = (0.15, 0.22, 0.32, 0.45, 0.65, 0.9),
                   ratios: tuple[float, ...] = (0.5, 1.0, 2.0)) -> np.ndarray:
    """Windows of each scale (a fraction of the image's shorter side) and aspect ratio (width / height).

    The step is one fraction of the window's own size for every scale, as in the classic
    detectors, so neighbouring windows overlap equally at each scale; the fraction is the
    finest that keeps within the budget. A comparison with selective search at equal proposal
    count is then a comparison of where the boxes go, not of how many there are.
    """
    height, width = image.shape[:2]
    sizes = [(min(s * min(height, width) * np.sqrt(r), width), min(s * min(height, width) / np.sqrt(r), height))
             for s in scales for r in ratios]
    coarse, fine = 16.0, 0.02  # a stride of 16 windows leaves one per size; 2 % is as dense as it gets
    for _ in range(30):  # bisection on the stride: the window count falls as the stride grows
        middle = np.sqrt(coarse * fine)
        fits = len(_windows(width, height, sizes, middle)) <= max_proposals
        coarse, fine = (middle, fine) if fits else (coarse, middle)
    boxes = _windows(width, height, sizes, coarse)
    if len(boxes) > max_proposals:  # even one window per size is over budget: keep an even selection
        boxes = boxes[np.linspace(0, len(boxes) - 1, max_proposals).round().astype(int)]
    return boxes


def gt_jitter(image: np.ndarray, gt_boxes: np.ndarray | None, max_proposals: int,
              per_box: int = 32, shift: float = 0.25, scale: float = 0.35, seed: int = 0) -> np.ndarray:
    """Boxes around each ground-truth box: centre shifted and sides scaled by random fractions."""
    gt = _as_boxes(gt_boxes if gt_boxes is not None else [])
    if len(gt) == 0:
        return gt
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    size = np.repeat(gt[:, 2:] - gt[:, :2], per_box, axis=0)
    centre = np.repeat((gt[:, :2] + gt[:, 2:]) / 2, per_box, axis=0)
    centre = centre + rng.uniform(-shift, shift, size.shape) * size
    size = size * np.exp(rng.uniform(-scale, scale, size.shape))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    boxes = np.clip(boxes, 0, [width, height, width, height])
    boxes = boxes[(boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)]
    return _as_boxes(boxes[rng.permutation(len(boxes))][:max_proposals])


PROPOSALS: dict[str, ProposalMethod] = {
    "selective_search": ProposalMethod(selective_search, {"mode": "fast", "min_side": 4.0}),
    "sliding_window": ProposalMethod(sliding_window, {"scales": [0.15, 0.22, 0.32, 0.45, 0.65, 0.9],
                                                      "ratios": [0.5, 1.0, 2.0]}),
    "gt_jitter": ProposalMethod(gt_jitter, {"per_box": 32, "shift": 0.25, "scale": 0.35, "seed": 0},
                                needs_ground_truth=True),
}


def get_method(name: str) -> ProposalMethod:
    try:
        return PROPOSALS[name]
    except KeyError:
        raise KeyError(f"unknown proposal method {name!r}; known: {', '.join(PROPOSALS)}") from None


@dataclass(frozen=True)
class Proposals:
    boxes: np.ndarray  # K x 4 float32, x1 y1 x2 y2
    seconds: float  # what computing them took, also when they came from the cache
    cached: bool


class ProposalCache:
    """Proposals on disk, one .npz per (image, method, options); shared by every job under one storage root."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.computed = 0  # how many this instance had to compute (the rest were hits)

    def key(self, image: np.ndarray, method: str, options: dict[str, Any], gt_boxes: np.ndarray | None) -> str:
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(image).tobytes())
        digest.update(json.dumps([list(image.shape), method, options], sort_keys=True, default=list).encode())
        if get_method(method).needs_ground_truth:
            digest.update(_as_boxes(gt_boxes if gt_boxes is not None else []).tobytes())
        return digest.hexdigest()[:32]

    def get(self, image: np.ndarray, method: str, max_proposals: int, options: dict[str, Any] | None = None,
            gt_boxes: np.ndarray | None = None) -> Proposals:
        """The method's boxes for `image` (H x W x 3 uint8 RGB), from the cache or computed and stored."""
        spec = get_method(method)
        unknown = sorted(set(options or {}) - set(spec.defaults))
        if unknown:
            raise ValueError(f"{method}: unknown option(s) {unknown}; known: {sorted(spec.defaults)}")
        settings = {**spec.defaults, **(options or {}), "max_proposals": int(max_proposals)}
        path = self.folder / method / f"{self.key(image, method, settings, gt_boxes)}.npz"
        if path.exists():
            with np.load(path) as stored:
                return Proposals(stored["boxes"], float(stored["seconds"]), cached=True)
        start = time.perf_counter()
        boxes = _as_boxes(spec.compute(image, gt_boxes, **settings))
        seconds = time.perf_counter() - start
        self.computed += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        # write then rename: jobs sharing the cache never read a half-written file
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
            np.savez(tmp, boxes=boxes, seconds=np.float64(seconds))
        os.replace(tmp.name, path)
        return Proposals(boxes, seconds, cached=False)
