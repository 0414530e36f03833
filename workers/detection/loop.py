"""The detection task: train a detector, checkpointing every epoch, score it on val, predict test.

`train_detector(spec, ctx)` is what workers.tasks.TASKS["detection"] runs. The arch picks the
detector (workers.detection.detectors): a model-zoo name gives R-CNN with that backbone, a
torchvision "fasterrcnn_..." name gives Faster R-CNN. Every detector goes through this one loop,
supplying its batches, loss and per-image detection (the registry's `Detector` shape).

On several ranks (a TorchTrainer job) the loop is classification's: the model is DDP-wrapped
by the RunContext, every rank trains on its share of each batch, evaluation is split across
the ranks and gathered, and rank 0 alone writes checkpoints, predictions and the result.

The test split is read for its images only; its predictions go to predictions.csv for the
challenge server to score (ARCHITECTURE.md invariant 1).
"""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

import torch

from workers import provenance
from workers.context import RunContext
from workers.datasets import DATASETS, get_dataset, load_dataset
from workers.datasets.base import Splits, box_rows
from workers.detection.detectors import Detector, detector_for
from workers.detection.map_metrics import detection_rows, evaluate_detections
from workers.detection.proposals import ProposalCache
from workers.detection.recipe import DetectorRecipe, parse_recipe
from workers.jobs import JobSpec
from workers.prediction_format import DETECTION_CSV_HEADER
from workers.zoo import count_params

PREDICTION_COLUMNS = DETECTION_CSV_HEADER  # predictions.csv is a challenge submission as it stands


def evaluate(detector: Detector, splits: Splits, recipe: DetectorRecipe, ctx: RunContext,
             method: str | None = None) -> tuple[dict[str, Any], float]:
    """Scores on the val split, each rank detecting on its shard, and the network's throughput there (the
    detector's unit per second of one rank)."""
    ground_truth, rows, items, seconds = {}, [], 0, 0.0
    for i in ctx.shard(range(len(splits.val))):
        image, target = splits.val[i]
        image_id = f"val_{i:06d}"
        ground_truth[image_id] = box_rows(target)
        start = time.perf_counter()
        found = detector.detect(image, method)
        seconds += time.perf_counter() - start
        items += found.items
        rows += detection_rows(image_id, found.boxes, found.scores, found.labels)
    parts = ctx.gather((ground_truth, rows, items, seconds))
    ground_truth = {image_id: boxes for part in parts for image_id, boxes in part[0].items()}
    rows = [row for part in parts for row in part[1]]
    items, seconds = sum(part[2] for part in parts), sum(part[3] for part in parts)
    scores = evaluate_detections(ground_truth, rows, splits.num_classes, splits.class_names,
                                 max_detections=recipe.max_detections, eleven_point=recipe.eleven_point)
    return scores, items / max(seconds, 1e-9)


def write_predictions(detector: Detector, splits: Splits, path: Path) -> int:
    """Every test image's detections as CSV rows; the test labels are never read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(PREDICTION_COLUMNS)
        for i in range(len(splits.test)):
            image, image_id = splits.test[i]
            found = detector.detect(image)
            for _, class_id, score, x1, y1, x2, y2 in detection_rows(image_id, found.boxes, found.scores, found.labels):
                writer.writerow([image_id, class_id, f"{score:.6f}", *(f"{v:.2f}" for v in (x1, y1, x2, y2))])
                count += 1
    return count


def _finite(values: dict[str, float]) -> dict[str, float | None]:
    """NaN (a class with no box in val) is not JSON, so the database would refuse it: null instead."""
    return {name: (v if math.isfinite(v) else None) for name, v in values.items()}


def _load_detection_splits(spec: JobSpec) -> Splits:
    entry = get_dataset(spec.dataset)
    if entry.task != "detection":
        detection = [name for name, e in DATASETS.items() if e.task == "detection"]
        raise ValueError(f"dataset {spec.dataset!r} is a {entry.task} dataset; the detection task needs one of: "
                         f"{', '.join(detection)}")
    return load_dataset(spec.dataset, spec.dataset_options)


def train_detector(spec: JobSpec, ctx: RunContext) -> dict[str, Any]:
    started = time.perf_counter()
    entry = detector_for(spec.arch)
    kind = entry.kind
    recipe = parse_recipe(spec.recipe, kind)
    if recipe.batch_size < ctx.world_size:
        raise ValueError(f"recipe.batch_size: {recipe.batch_size} is fewer than the {ctx.world_size} workers "
                         "(resources.workers) that share each batch")
    splits = _load_detection_splits(spec)
    device = ctx.device
    provenance.reset_peak_memory(device)
    torch.manual_seed(spec.seed)
    cache = ProposalCache(recipe.proposal_cache or Path(spec.storage) / "proposal_cache")
    detector = entry.builder()(spec.arch, spec.input_size, splits, recipe, device, cache)
    model = detector.model
    ctx.log(f"{kind} {spec.arch} on {spec.dataset}: {len(splits.train)} train, {len(splits.val)} val, "
            f"{len(splits.test)} test images, {splits.num_classes} classes")
    prepared = detector.prepare(ctx)
    ctx.log(f"prepared: {prepared} ({cache.computed} proposal sets computed, the rest cached)")

    net = ctx.ddp(model)  # what the training step calls; checkpoints and scoring use the bare model
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    history: list[dict[str, Any]] = []
    done = 0
    resume = ctx.latest_checkpoint()
    if resume is not None:
        state = torch.load(resume, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, done = list(state["history"]), int(state["epoch"])
        torch.set_rng_state(state["rng"].cpu())  # dropout continues as in an uninterrupted run
        ctx.log(f"resumed from {resume} after epoch {done}")

    def checkpoint_state(epochs_done: int) -> dict[str, Any]:
        return {"epoch": epochs_done, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "history": history, "arch": spec.arch, "kind": kind, "rng": torch.get_rng_state()}

    # Training only: scoring runs in float32, where bf16 would round a 500-pixel box coordinate by 2 pixels.
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe.amp and device.type == "cuda")
    train_items, rank_items, train_seconds, checkpoint = 0, 0, 0.0, resume
    for epoch in range(done, recipe.epochs):
        # a generator per epoch: a resumed run draws the same batches as an uninterrupted one
        generator = torch.Generator().manual_seed(spec.seed * 100_003 + epoch)
        steps, batches = detector.epoch(generator, ctx.rank, ctx.world_size)
        model.train()
        loss_sum, epoch_items, lr = 0.0, 0, recipe.lr
        start = time.perf_counter()
        for step, batch in enumerate(batches):
            lr = recipe.lr * recipe.lr_factor(epoch + step / max(steps, 1))
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast:
                loss, count = detector.loss(batch, net)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach())
            epoch_items += count
        seconds = time.perf_counter() - start
        rank_items += epoch_items
        epoch_items = sum(ctx.gather(epoch_items))  # every rank's share of the batches
        train_items, train_seconds = train_items + epoch_items, train_seconds + seconds
        ctx.share_buffers(model)
        val, _ = evaluate(detector, splits, recipe, ctx)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / max(steps, 1), "lr": lr, "val_map50": val["map50"],
                  "steps": steps, "train_ips": epoch_items / max(seconds, 1e-9), "epoch_s": seconds}
        history.append(record)
        checkpoint = ctx.save_checkpoint(epoch + 1, checkpoint_state(epoch + 1))
        ctx.report(record)
        ctx.log(f"epoch {epoch + 1}/{recipe.epochs}: loss {record['train_loss']:.4f}, lr {lr:.5f}, "
                f"val mAP@0.5 {val['map50']:.4f}, {record['train_ips']:.1f} {detector.unit}/s")

    # The last epoch's score is the model's before any post-training step (R-CNN's box regressors).
    before = history[-1]["val_map50"] if history else None
    items_by_rank = ctx.gather(rank_items)  # each rank's share: that every rank took part
    finished = detector.finish()  # on every rank: the same model and data give the same fit
    final, eval_ips = evaluate(detector, splits, recipe, ctx)
    by_proposals = {detector.proposal_method: final["map50"]}
    by_proposals |= {method: evaluate(detector, splits, recipe, ctx, method)[0]["map50"]
                     for method in detector.comparisons}
    by_scorer = {detector.classifier: final["map50"]} if detector.classifier else {}
    for scorer in detector.other_scorers:  # R-CNN's SVMs: the softmax too, on the same network and boxes
        with detector.scored_by(scorer):
            by_scorer[scorer] = evaluate(detector, splits, recipe, ctx)[0]["map50"]
    if not ctx.is_main:  # rank 0 writes the predictions and the result
        return {"map50": final["map50"], "map_coco": final["map_coco"], "history": history,
                "epochs_done": recipe.epochs}
    predictions = ctx.storage / "predictions.csv"
    n_predictions = write_predictions(detector, splits, predictions)
    checkpoint = ctx.save_checkpoint(recipe.epochs, checkpoint_state(recipe.epochs)) or checkpoint
    proposal_stats = detector.proposal_stats(splits.val)
    ctx.log(f"val mAP@0.5 {final['map50']:.4f}, COCO mAP {final['map_coco']:.4f}; {n_predictions} test detections")

    unit = f"{detector.unit}/s"
    metrics = {
        "detector": kind, "ap50": _finite(final["ap50"]), "ap_coco": _finite(final["ap_coco"]),
        "map50_coco": final["map50_coco"], "interpolation": final["interpolation"],
        "map50_before_finish": before, "map50_by_proposals": by_proposals, "proposals": proposal_stats,
        "classifier": detector.classifier, "map50_by_classifier": by_scorer,
        "world_size": ctx.world_size, "train_items_by_rank": items_by_rank,
        "ips_unit": unit, "test_detections": n_predictions, **prepared, **finished,
    }
    return {
        "map50": final["map50"], "map_coco": final["map_coco"], "top1_err": None, "top5_err": None,
        "metrics": metrics, "history": history, "epochs_done": recipe.epochs,
        "params": count_params(model), "flops": detector.flops(), "input_size": spec.input_size,
        "train_ips": train_items / train_seconds if train_seconds else None, "eval_ips": eval_ips,
        "wall_s": time.perf_counter() - started, "peak_mem_mb": provenance.peak_memory_mb(device),
        "hardware": provenance.hardware(device), "node": provenance.node(), "versions": provenance.versions(),
        "git_commit": provenance.git_commit(), "checkpoint": str(checkpoint) if checkpoint else None,
        "log_path": str(ctx.storage / "log.txt"), "predictions": str(predictions),
    }
