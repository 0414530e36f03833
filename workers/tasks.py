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
    # What its runs are scored as, and so which predictions, exports and challenges they share: a loop is how a
    # result is made, not what it measures (the classical pipeline's runs are classifications).
    scored_as: str = "classification"

    def __call__(self, spec: JobSpec, ctx: RunContext) -> dict[str, Any]:
        return entry_point(self.loop)(spec, ctx)


TASKS: dict[str, Task] = {
    "classification": Task("workers.train:train_classifier"),
    "detection": Task("workers.detection.loop:train_detector", scored_as="detection"),
    # ILSVRC 2011's dense SIFT + Fisher vectors + linear SVMs: a classifier without a network (workers.zoo's
    # sift_fv_svm), scored, stored and shown as the networks are.
    "classical": Task("workers.classical.sift_fv_svm:train_sift_fv_svm"),
}


def tasks_scored_as(kind: str) -> tuple[str, ...]:
    """The tasks whose runs are scored as `kind` ("classification" or "detection")."""
    return tuple(name for name, task in TASKS.items() if task.scored_as == kind)
