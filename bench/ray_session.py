"""One local Ray for every benchmark that needs it, started the orchestrator's way (scheduler.connect)."""
from __future__ import annotations

import time

_started: dict[str, float] = {}


def ensure_ray(num_cpus: int) -> float:
    """Starts Ray if this process has none; returns the seconds the start took (that of the first start)."""
    import ray

    from orchestrator import scheduler

    if not ray.is_initialized():
        start = time.perf_counter()
        scheduler.connect(None, num_cpus)
        _started["seconds"] = time.perf_counter() - start
    return _started.get("seconds", 0.0)


def shutdown() -> None:
    import sys

    ray = sys.modules.get("ray")  # never import Ray just to find that it was not started
    if ray is not None and ray.is_initialized():
        ray.shutdown()
