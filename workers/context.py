"""What a job sees of where it runs: one interface for a warm Ray task and for a Ray Train worker.

The training loops call only `RunContext`, so the same loop runs as a single-process Ray task
(no worker-group start-up, the common case) or on every rank of a `TorchTrainer` (DDP).
"""
from __future__ import annotations

import functools
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Subset

CHECKPOINT_RE = re.compile(r"epoch_(\d+)\.pt$")


def pick_device(use_gpu: bool) -> torch.device:
    if use_gpu and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@functools.cache
def cpu_has_amx() -> bool:
    """Whether this CPU multiplies bf16 in AMX tiles and the kernel lets this process use them."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    init_amx = getattr(torch._C._cpu, "_init_amx", None)  # asks the kernel for the tile state (Linux >= 5.16)
    return " amx_bf16" in flags and bool(init_amx and init_amx())


def bf16_pays(device: torch.device) -> bool:
    """Where bf16 autocast and channels_last speed training up: a GPU, or a CPU with AMX (oneDNN's AMX kernels;
    measured with `python -m bench --only training`: ResNet-50 at 64 px 1.32x an fp32 eager step). Without AMX
    both slow a CPU down."""
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_amx())


@dataclass
class RunContext:
    """A job's own storage folder, its rank, and where its progress goes."""

    job_id: str
    storage: Path  # the job's folder: checkpoints, log, predictions
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    on_report: Callable[[dict[str, Any]], None] | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def checkpoint_dir(self) -> Path:
        return self.storage / "checkpoints"

    def ddp(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model as a training step calls it: DDP-wrapped on several ranks (gloo on CPU, NCCL on GPU)."""
        if self.world_size == 1:
            return model
        on_gpu = self.device.type == "cuda"
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index] if on_gpu else None)

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value` (any picklable object), in rank order, on every rank."""
        if self.world_size == 1:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def shard(self, items: Sequence[Any]) -> Sequence[Any]:
        """This rank's share of an evaluation set (every world_size-th item), without the padding that
        DistributedSampler adds: gathered, the shards hold each item exactly once."""
        return items if self.world_size == 1 else Subset(items, range(self.rank, len(items), self.world_size))

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def share_buffers(self, model: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm's running statistics, which each rank updates on its own share of a batch)
        on every rank, so that ranks evaluating shards of a split evaluate one model: the one checkpointed."""
        if self.world_size > 1:
            for buffer in model.buffers():
                dist.broadcast(buffer, 0)

    def latest_checkpoint(self) -> Path | None:
        found = [(int(m.group(1)), p) for p in self.checkpoint_dir.glob("epoch_*.pt") if (m := CHECKPOINT_RE.search(p.name))]
        return max(found)[1] if found else None

    def save_checkpoint(self, epoch: int, state: dict[str, Any]) -> Path | None:
        """Rank 0 writes atomically (temp file, then rename) so a kill never leaves a torn checkpoint."""
        if not self.is_main:
            return None
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / f"epoch_{epoch:04d}.pt"
        with tempfile.NamedTemporaryFile(dir=self.checkpoint_dir, suffix=".tmp", delete=False) as tmp:
            torch.save(state, tmp)
        os.replace(tmp.name, path)
        for old in sorted(self.checkpoint_dir.glob("epoch_*.pt"))[:-2]:  # keep the newest two
            old.unlink(missing_ok=True)
        return path

    def report(self, metrics: dict[str, Any]) -> None:
        if self.on_report and self.is_main:
            self.on_report(dict(metrics, job_id=self.job_id))

    def log(self, line: str) -> None:
        if self.is_main:
            self.storage.mkdir(parents=True, exist_ok=True)
            with open(self.storage / "log.txt", "a") as f:
                f.write(line.rstrip() + "\n")


class RayTrainContext(RunContext):
    """Inside a TorchTrainer worker: metrics also go to Ray Train.

    Checkpoints stay in the job's own storage folder rather than Ray Train's, so that a
    restarted worker, a retried task and a re-run of the suite all resume from one place.
    """

    def report(self, metrics: dict[str, Any]) -> None:
        import ray.train

        super().report(metrics)
        ray.train.report(metrics)
