"""How busy the cores were over an interval: this process tree's CPU time, and the whole machine's (/proc/stat).

The tree's figure is the one to judge a scheduler by on a shared machine: the machine-wide one
also counts everyone else's work.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


def tree_cpu_seconds() -> float:
    """User + system CPU of this process and every descendant, including descendants they have reaped."""
    total = 0.0
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            t = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # exited between listing and reading: its time is lost, a small undercount
        total += t.user + t.system + t.children_user + t.children_system
    return total


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return total - idle, total


@dataclass
class Busy:
    tree: float  # this process tree's CPU seconds / (wall x cores)
    machine: float  # every process's: 1 - idle share from /proc/stat


class BusyMeter:
    def __init__(self, cores: int | None = None):
        self.cores = cores or os.cpu_count() or 1

    def __enter__(self) -> BusyMeter:
        self.start_wall, self.start_tree, self.start_jiffies = time.perf_counter(), tree_cpu_seconds(), machine_jiffies()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.start_wall
        busy, total = machine_jiffies()
        self.result = Busy(tree=(tree_cpu_seconds() - self.start_tree) / max(wall * self.cores, 1e-9),
                           machine=(busy - self.start_jiffies[0]) / max(total - self.start_jiffies[1], 1))
