"""How busy the cores were over an interval: this process tree's CPU time, and the whole machine's.

Read from /proc (Linux) rather than psutil, which this environment has only as Ray's vendored copy.
The tree's figure is the one to judge a scheduler by on a shared machine: the machine-wide one
also counts everyone else's work.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and of its reaped children), or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name in parentheses may hold spaces
    # fields[1] is ppid; utime, stime, cutime, cstime are fields 14-17 of stat(5), here 11-14
    return int(fields[1]), sum(int(x) for x in fields[11:15]) / TICKS


def tree_cpu_seconds(root: int | None = None) -> float:
    """User + system CPU of `root` (this process) and every descendant, including descendants they reaped."""
    table = {int(pid): s for pid in os.listdir("/proc") if pid.isdigit() and (s := _stat(pid)) is not None}
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root or os.getpid()]
    while todo:
        pid = todo.pop()
        if pid in table:
            total += table[pid][1]
        todo += children.get(pid, [])
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
    """`with BusyMeter(cores) as m: ...`, then m.result."""

    def __init__(self, cores: int | None = None):
        self.cores = cores or os.cpu_count() or 1

    def __enter__(self) -> Self:
        self.start_tree, self.start_jiffies = tree_cpu_seconds(), machine_jiffies()
        self.start_wall = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.start_wall
        busy, total = machine_jiffies()
        self.result = Busy(tree=(tree_cpu_seconds() - self.start_tree) / max(wall * self.cores, 1e-9),
                           machine=(busy - self.start_jiffies[0]) / max(total - self.start_jiffies[1], 1))
