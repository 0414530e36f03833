"""A job: what to run, on what, and its identity. The loops that run jobs are named in workers.tasks."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Bump when a change alters what a job computes for the same configuration, or what its identity holds:
# it is part of every job's identity, so results of the old protocol are not mistaken for the new.
# 2: a detection job's recipe is the resolved one (workers.detection.recipe), as a classification job's.
PROTOCOL_VERSION = "2"


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0  # per training worker
    gpus: float = 0.0  # per training worker
    workers: int = 1  # Ray Train workers; more than one means DDP through TorchTrainer

    def validate(self, where: str) -> None:
        if self.cpus <= 0:
            raise ValueError(f"{where}.cpus: must be positive, got {self.cpus}")
        if self.gpus < 0:
            raise ValueError(f"{where}.gpus: must not be negative, got {self.gpus}")
        if self.workers < 1:
            raise ValueError(f"{where}.workers: at least 1, got {self.workers}")


@dataclass(frozen=True)
class JobSpec:
    suite: str
    task: str  # a key of workers.tasks.TASKS
    arch: str
    dataset: str
    dataset_options: dict[str, Any]
    recipe: dict[str, Any]  # resolved, every field: workers.recipes.Recipe's or workers.detection.recipe's
    seed: int
    input_size: int
    resources: Resources = field(default_factory=Resources)
    storage: str = "runs"  # root folder of every job's own folder
    max_failures: int = 2
    # The challenge's participant kit the test predictions are written for, a folder relative to `storage`
    # (workers.datasets.kit); None: the dataset's own test split. Not part of the identity: it decides which
    # images the predictions are keyed by, not what the job trains or measures, and it is set by the driver
    # only when a challenge exists, so a job's id (and its finished row) does not change with it.
    kit: str | None = None

    def identity(self) -> dict[str, Any]:
        """Everything that determines the result, and nothing that does not (suite name, storage, CPUs)."""
        return {
            "protocol": PROTOCOL_VERSION, "task": self.task, "arch": self.arch, "dataset": self.dataset,
            "dataset_options": self.dataset_options, "recipe": self.recipe, "seed": self.seed,
            "input_size": self.input_size, "world_size": self.resources.workers,
        }

    @property
    def job_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    @property
    def folder(self) -> Path:
        return Path(self.storage) / f"{self.arch}-{self.dataset}-s{self.seed}-{self.job_id[:10]}"

    @property
    def uses_gpu(self) -> bool:
        return self.resources.gpus > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobSpec:
        return cls(**{**d, "resources": Resources(**d["resources"])})

