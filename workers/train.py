"""The one classification training loop: a warm Ray task runs it as rank 0 of 1, TorchTrainer on every rank."""
from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.transforms import v2

from workers import provenance
from workers.context import RunContext, bf16_pays
from workers.datasets import Splits, load_dataset
from workers.datasets.kit import prediction_split
from workers.jobs import JobSpec
from workers.metrics import TOP_K, TopKCounter, class_report, time_to
from workers.prediction_format import MAX_GUESSES, classification_header
from workers.recipes import Recipe
from workers.zoo import count_flops, count_params, get_arch

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as the reference scripts


def train_transform(size: int, recipe: Recipe) -> v2.Compose:
    steps = [v2.RandomResizedCrop(size, scale=recipe.crop_scale, antialias=True)]
    if recipe.hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])


def eval_transform(size: int, recipe: Recipe, ten_crop: bool = False) -> v2.Compose:
    resize = [v2.Resize(round(size / recipe.eval_crop), antialias=True)]
    # A plain callable, not v2.Lambda: v2 would apply it to each crop rather than to the tuple of ten.
    crop = [v2.TenCrop(size), torch.stack] if ten_crop else [v2.CenterCrop(size)]
    return v2.Compose([*resize, *crop, v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])


class Transformed(Dataset):
    """A split with a transform applied to its images, leaving the target (label or id) alone."""

    def __init__(self, base: Dataset, transform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image, target = self.base[i]
        return self.transform(image), target


def loss_fn(outputs: Any, targets: torch.Tensor, criterion: nn.Module, aux_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Main loss plus the auxiliary classifiers' (GoogLeNet, Inception v3), weighted as in their papers."""
    if isinstance(outputs, tuple):  # GoogLeNetOutputs / InceptionOutputs in train mode
        logits, aux = outputs[0], [a for a in outputs[1:] if a is not None]
    else:
        logits, aux = outputs, []
    loss = criterion(logits, targets)
    for a in aux:
        loss = loss + aux_weight * criterion(a, targets)
    return loss, logits


@dataclass
class Setup:
    model: nn.Module  # what runs forward: DDP-wrapped when world_size > 1
    bare: nn.Module
    optimizer: torch.optim.Optimizer
    recipe: Recipe
    data: Splits
    device: torch.device
    autocast: bool
    channels_last: bool


def build(spec: JobSpec, ctx: RunContext) -> Setup:
    recipe = Recipe().override(spec.recipe)
    torch.manual_seed(spec.seed)
    data = load_dataset(spec.dataset, spec.dataset_options)
    fast = bf16_pays(ctx.device)
    bare = get_arch(spec.arch).build(data.num_classes, spec.input_size, recipe.dropout,
                                     **recipe.model_options()).to(ctx.device)  # recipes: init, zero-init residual
    channels_last = fast and recipe.channels_last
    if channels_last:
        bare = bare.to(memory_format=torch.channels_last)
    model = ctx.ddp(bare)
    if recipe.compile:
        model = torch.compile(model)
    optimizer = torch.optim.SGD(bare.parameters(), lr=recipe.scaled_lr(), momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
    return Setup(model, bare, optimizer, recipe, data, ctx.device, fast and recipe.amp, channels_last)


def to_device(s: Setup, images: torch.Tensor) -> torch.Tensor:
    images = images.to(s.device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if s.channels_last and images.dim() == 4 else images


def train_one_epoch(s: Setup, loader: DataLoader, epoch: int, criterion: nn.Module) -> dict[str, float]:
    s.model.train()
    steps = len(loader) if not s.recipe.max_steps_per_epoch else min(len(loader), s.recipe.max_steps_per_epoch)
    base_lr, seen, loss_sum, counter = s.recipe.scaled_lr(), 0, 0.0, TopKCounter((1,))
    start = time.perf_counter()
    for i, (images, targets) in enumerate(loader):
        if i >= steps:
            break
        lr = base_lr * s.recipe.lr_factor(epoch + i / steps)
        for group in s.optimizer.param_groups:
            group["lr"] = lr
        images, targets = to_device(s, images), targets.to(s.device, non_blocking=True)
        with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=s.autocast):
            loss, logits = loss_fn(s.model(images), targets, criterion, s.recipe.aux_weight)
        s.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        s.optimizer.step()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch}, step {i}")
        loss_sum += loss.item() * len(targets)
        counter.update(logits.detach().float(), targets)
        seen += len(targets)
    elapsed = time.perf_counter() - start
    return {"train_loss": loss_sum / max(seen, 1), "train_top1_err": counter.errors()[1],
            "images_per_s": seen * max(1, (dist.get_world_size() if dist.is_initialized() else 1)) / elapsed,
            "lr": lr}


def reduced(tensor: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(tensor)
    return tensor


@torch.no_grad()
def evaluate(s: Setup, loader: DataLoader, counter: TopKCounter | None = None) -> tuple[dict[int, float], float]:
    """Top-k errors over the whole split (summed across ranks) and this rank's images/s. A `counter` made with
    num_classes also gathers the confusion matrix and per-class hits (the final evaluation's)."""
    s.bare.eval()
    counter, seen, start = counter or TopKCounter(), 0, time.perf_counter()
    for images, targets in loader:
        images, targets = to_device(s, images), targets.to(s.device)
        with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=s.autocast):
            if images.dim() == 5:  # ten crops: average the crops' softmax
                n, c = images.shape[:2]
                logits = s.bare(images.flatten(0, 1)).float().softmax(-1).view(n, c, -1).mean(1)
            else:
                logits = s.bare(images).float()
        counter.update(logits, targets)
        seen += len(targets)
    ips = seen / max(time.perf_counter() - start, 1e-9)
    if dist.is_initialized():
        totals = torch.cat([counter.correct, torch.tensor([counter.total])]).to(s.device)
        dist.all_reduce(totals)
        counter.correct, counter.total = totals[:-1].cpu(), int(totals[-1])
        if counter.num_classes is not None:  # every rank has them, zeros for an empty shard: no rank waits alone
            counter.confusion, counter.class_hits = (reduced(x.to(s.device)) for x in (counter.confusion, counter.class_hits))
    return counter.errors(), ips


@torch.no_grad()
def predict_test(s: Setup, loader: DataLoader, ctx: RunContext) -> str:
    """Writes the test split's top-5 guesses in the submission format; test labels are never at hand."""
    s.bare.eval()
    path = ctx.storage / "predictions.csv"
    k = min(MAX_GUESSES, s.data.num_classes)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(classification_header(k))
        for images, ids in loader:
            with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=s.autocast):
                top = s.bare(to_device(s, images)).float().topk(k, dim=1).indices.cpu().tolist()
            writer.writerows([image_id, *guesses] for image_id, guesses in zip(ids, top))
    return str(path)


def train_classifier(spec: JobSpec, ctx: RunContext) -> dict[str, Any]:
    wall_start = time.perf_counter()
    provenance.reset_peak_memory(ctx.device)
    s = build(spec, ctx)
    size, recipe = spec.input_size, s.recipe
    batch = max(1, recipe.batch_size // ctx.world_size)
    train_set = Transformed(s.data.train, train_transform(size, recipe))
    sampler = DistributedSampler(train_set, ctx.world_size, ctx.rank, seed=spec.seed) if ctx.world_size > 1 else None
    generator = torch.Generator().manual_seed(spec.seed)
    train_loader = DataLoader(train_set, batch, shuffle=sampler is None, sampler=sampler, drop_last=len(train_set) > batch,
                              num_workers=recipe.num_workers, generator=generator, pin_memory=s.device.type == "cuda",
                              persistent_workers=recipe.num_workers > 0)
    val_loader = DataLoader(ctx.shard(Transformed(s.data.val, eval_transform(size, recipe))), batch,
                            num_workers=recipe.num_workers)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)

    start_epoch, history = 0, []
    if (checkpoint := ctx.latest_checkpoint()) is not None:
        state = torch.load(checkpoint, map_location=s.device, weights_only=False)
        s.bare.load_state_dict(state["model"])
        s.optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"], state["history"]
        torch.set_rng_state(state["rng"])
        generator.set_state(state["loader_rng"])
        ctx.log(f"resumed from {checkpoint.name} at epoch {start_epoch}")

    train_ips = []
    # Time to accuracy (DAWNBench): training seconds, and seconds since the start with evaluation and checkpoints,
    # at each epoch's validation; carried on from the checkpoint's history by a resumed run.
    train_s = float(history[-1].get("train_s", 0.0)) if history else 0.0
    elapsed_before, loop_start = (float(history[-1].get("elapsed_s", 0.0)) if history else 0.0), time.perf_counter()
    for epoch in range(start_epoch, recipe.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        epoch_start = time.perf_counter()
        stats = train_one_epoch(s, train_loader, epoch, criterion)
        train_s += time.perf_counter() - epoch_start
        ctx.share_buffers(s.bare)  # every rank evaluates its shard with the checkpointed BatchNorm statistics
        errors, _ = evaluate(s, val_loader)
        record = {"epoch": epoch + 1, **stats, **{f"val_top{k}_err": errors[k] for k in (1, 5)},
                  "train_s": round(train_s, 3), "elapsed_s": round(elapsed_before + time.perf_counter() - loop_start, 3)}
        history.append(record)
        train_ips.append(stats["images_per_s"])
        ctx.save_checkpoint(epoch + 1, {
            "model": s.bare.state_dict(), "optimizer": s.optimizer.state_dict(), "epoch": epoch + 1,
            "history": history, "rng": torch.get_rng_state(), "loader_rng": generator.get_state()})
        ctx.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        ctx.report({**record, "epochs": recipe.epochs})

    final_loader = val_loader
    if recipe.ten_crop:
        final_loader = DataLoader(ctx.shard(Transformed(s.data.val, eval_transform(size, recipe, ten_crop=True))),
                                  max(1, batch // 10), num_workers=recipe.num_workers)
    counter = TopKCounter(num_classes=s.data.num_classes)  # where the errors are: per class, and the confusion
    errors, eval_ips = evaluate(s, final_loader, counter)
    result: dict[str, Any] = {"top1_err": errors[1], "top5_err": errors[5], "epochs_done": len(history),
                              "history": history, "metrics": {f"top{k}_err": errors[k] for k in TOP_K}}
    if not ctx.is_main:
        return result
    # issue #14: the challenge's kit images when the job names a kit (workers.datasets.kit), else the test split.
    test_loader = DataLoader(Transformed(prediction_split(spec, s.data, ctx.log), eval_transform(size, recipe)), batch)
    result["metrics"].update({"ten_crop": recipe.ten_crop, "bf16_autocast": s.autocast, "channels_last": s.channels_last,
                              "val_images": len(s.data.val), "train_images": len(s.data.train)})
    result["metrics"].update(class_report(*counter.class_counts(), s.data.class_names), confusion_split="val",
                             time_to=time_to(history))
    if s.data.label_source:  # which file labelled val, and its SHA-256 (imagenet)
        result["metrics"]["label_source"] = s.data.label_source
    result.update({
        "predictions": predict_test(s, test_loader, ctx),
        "params": count_params(s.bare), "flops": count_flops(s.bare, size), "input_size": size,
        "train_ips": sum(train_ips) / len(train_ips) if train_ips else None, "eval_ips": eval_ips,
        "wall_s": time.perf_counter() - wall_start, "peak_mem_mb": provenance.peak_memory_mb(ctx.device),
        "hardware": provenance.hardware(ctx.device), "node": provenance.node(), "versions": provenance.versions(),
        "git_commit": provenance.git_commit(), "checkpoint": str(ctx.latest_checkpoint() or ""),
        "log_path": str(ctx.storage / "log.txt"),
    })
    return result
