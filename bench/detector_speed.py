"""Detector: region proposals per second per method, the proposal cache's hit cost, R-CNN inference.

On `synthetic-scenes` images. Proposals: each method of workers.detection.proposals.PROPOSALS
with its defaults and the recipe's budget. Cache: ProposalCache.get on images already cached
(hash of the image, np.load) against computing selective search. R-CNN: RegionDetector.detect
(warp, CNN, box regression, per-class NMS) per image with proposals from the cache, against the
bare CNN forward over the same number of regions, which tells the network from the rest.
Skipped with a note when workers.detection cannot be imported.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from bench.environment import workload
from bench.harness import Figure, Settings, Skip, compared, interleave, per_second, timed

PACKAGES = ("torch", "torchvision", "opencv-contrib-python-headless")
ARCH, INPUT = "alexnet", 64  # the smallest zoo backbone R-CNN takes at the smallest input it accepts


def modules() -> Any:
    try:
        from workers.datasets import load_dataset
        from workers.detection import proposals, recipe, regions
    except ImportError as exc:  # the detector track is still being written elsewhere
        raise Skip(f"workers.detection is not importable: {exc}") from None
    return proposals, recipe, regions, load_dataset


def run(settings: Settings) -> list[Figure]:
    proposals, recipe_mod, regions, load_dataset = modules()
    n, size = settings.pick(16, 4), 112
    splits = load_dataset("synthetic-scenes", {"image_size": size, "train_images": 1, "val_images": n,
                                               "test_images": 1})
    items = [splits.val[i] for i in range(n)]
    images = [regions.hwc(image) for image, _ in items]
    truth = [target["boxes"].numpy() for _, target in items]
    recipe = recipe_mod.DetectorRecipe()
    budget = recipe.max_proposals
    work = workload(PACKAGES, images=n, image_size=size, max_proposals=budget, threads=settings.threads)

    counts: dict[str, int] = {}  # boxes per method over all images, for the workload column

    def method_rate(name: str) -> Callable[[], float]:
        method = proposals.get_method(name)

        def sample() -> float:
            start = time.perf_counter()
            counts[name] = sum(len(method.compute(image, gt, budget, **method.defaults))
                               for image, gt in zip(images, truth))
            return counts[name] / (time.perf_counter() - start)

        return sample

    samples = interleave({name: method_rate(name) for name in proposals.PROPOSALS}, settings.repeats, settings.warmup)
    figures = [Figure("detector", f"proposals/s, {name}", {**work, "boxes_per_image": round(counts[name] / n)},
                      "boxes/s", samples[name]) for name in proposals.PROPOSALS]
    figures += cache_figures(proposals, images, budget, work, settings)
    figures += rcnn_figures(proposals, recipe_mod, regions, splits, items, settings)
    return figures


def cache_figures(proposals: Any, images: list[Any], budget: int, work: dict[str, Any],
                  settings: Settings) -> list[Figure]:
    cache = proposals.ProposalCache(settings.workdir / "proposal_cache")
    method = proposals.get_method("selective_search")
    for image in images:
        cache.get(image, "selective_search", budget)

    def compute() -> float:
        return timed(lambda: [method.compute(i, None, budget, **method.defaults) for i in images]) / len(images)

    def hit() -> float:
        return timed(lambda: [cache.get(i, "selective_search", budget) for i in images]) / len(images)

    paths = {"compute": compute, "cache hit": hit}
    samples = interleave(paths, settings.repeats, settings.warmup)
    return [compared("detector", "proposal cache hit vs computing selective search, per image", work, "s", samples,
                     "cache hit", "compute")]


def rcnn_figures(proposals: Any, recipe_mod: Any, regions: Any, splits: Any, items: list[Any],
                 settings: Settings) -> list[Figure]:
    recipe = recipe_mod.DetectorRecipe()
    cache = proposals.ProposalCache(settings.workdir / "proposal_cache")
    detector = regions.RegionDetector(ARCH, INPUT, splits, recipe, torch.device("cpu"), cache)
    for image, _ in items:  # proposals computed once, as a second run of a job finds them
        detector.proposals(image, recipe.proposals)
    found = [detector.detect(image) for image, _ in items]
    region_count = sum(f.items for f in found)
    backbone = detector.model.eval()
    # The same forward batches detect() makes (an image's proposals, split by eval_batch), so the ratio
    # is the cost of warping and NMS, not of a different batch size.
    batches = [torch.randn(len(chunk), 3, INPUT, INPUT) for f in found
               for chunk in torch.arange(f.items).split(recipe.eval_batch)]

    def bare_forward() -> float:
        with torch.no_grad():
            return per_second(region_count, lambda: [backbone(b) for b in batches])

    paths = {"detect": lambda: per_second(region_count, lambda: [detector.detect(image) for image, _ in items]),
             "bare forward": bare_forward}
    samples = interleave(paths, settings.repeats, settings.warmup)
    work = workload(PACKAGES, model=f"R-CNN {ARCH}", input=INPUT, images=len(items), image_size=splits.image_size,
                    regions_per_image=round(region_count / len(items)), eval_batch=recipe.eval_batch,
                    threads=settings.threads, device="cpu")
    per_image = [x * len(items) / region_count for x in samples["detect"]]
    return [compared("detector", "R-CNN detect regions/s vs bare CNN forward", work, "regions/s", samples, "detect",
                     "bare forward", note="detect = warp + CNN + box regression + per-class NMS"),
            Figure("detector", "R-CNN inference images/s (proposals cached)", work, "img/s", per_image)]
