"""What the figures were measured on: CPU, cores, threads, load, package versions."""
from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

from workers import provenance

PACKAGES = ("torch", "torchvision", "ray", "numpy", "pandas", "sqlalchemy", "streamlit", "psycopg2-binary",
            "pyarrow", "faster-coco-eval", "opencv-contrib-python-headless")


def versions() -> dict[str, str]:
    return provenance.versions(PACKAGES)


def versions_of(*packages: str) -> str:
    """A short "torch 2.14.1, ray 2.60.0" naming the packages a figure depends on."""
    known = versions()
    return ", ".join(f"{p} {known[p]}" for p in packages if p in known)


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The vector extensions that decide which CPU kernels (and bf16 paths) torch can use."""
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in wanted if flag in present]
    except OSError:
        pass
    return []


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def describe(threads: int) -> dict[str, Any]:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads, "cpu_flags": cpu_flags(),
            "device": "cpu", "load_average_at_start": load_average(), "versions": versions()}


def workload(packages: tuple[str, ...] = ("torch",), **fields: Any) -> dict[str, Any]:
    """A figure's workload: the given fields (model, batch, input size, threads, ...) and the versions used."""
    return {**fields, "versions": versions_of(*packages)}
