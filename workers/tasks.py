"""The task registry: a job's `task` names the training loop that runs it.

Each loop is named as data, "module:function", and imported when a job of its task first runs.
So this table, and workers.jobs beside it, import no training code: the orchestrator plans a
suite without torch, and a training loop may import workers.jobs without closing a circle.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.context import RunContext
    from workers.jobs import JobSpec


def entry_point(name: str) -> Callable[..., Any]:
    """The object a "module:attribute" string names, importing its module."""
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Task:
    loop: str  # "module:function", (JobSpec, RunContext) -> result dict

    def __call__(self, spec: JobSpec, ctx: RunContext) -> dict[str, Any]:
        return entry_point(self.loop)(spec, ctx)


TASKS: dict[str, Task] = {
    "classification": Task("workers.train:train_classifier"),
    "detection": Task("workers.detection.loop:train_detector"),
}
