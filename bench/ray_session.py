"""A private local Ray per benchmark that needs one, set up as orchestrator.scheduler.connect sets up its own.

Private: `address="local"` always starts a new cluster. Without it, ray.init joins whatever
cluster `ray start` left running on the machine (on a shared machine, someone else's, with
someone else's load). Per benchmark: each one shuts its Ray down when done, so the benchmarks
without Ray cannot be taken down by a cluster dying under them; anyone's `ray stop --force` (the
test suite's Ray fixture runs one) kills every Ray process on the machine, and Ray then ends its
driver.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

# As scheduler.connect starts a local cluster (same runtime env, no log forwarding, no dashboard, workers at nice 0).
RUNTIME_ENV = {"env_vars": {"PYTHONWARNINGS": "ignore::UserWarning"}}


@contextmanager
def local_ray(num_cpus: int) -> Iterator[float]:
    """A new local Ray with `num_cpus` CPUs for the block; yields the seconds its start took."""
    import ray

    start = time.perf_counter()
    ray.init(address="local", num_cpus=num_cpus, runtime_env=RUNTIME_ENV, log_to_driver=False,
             include_dashboard=False, _system_config={"worker_niceness": 0})
    started = time.perf_counter() - start
    try:
        yield started
    finally:
        ray.shutdown()
