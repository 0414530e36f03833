"""The benchmarks by name. Each module is imported only when its benchmark runs, so that `--only scoring`
does not pay for importing torch and Ray, and a module still being written elsewhere cannot break the others."""
from __future__ import annotations

import importlib
from collections.abc import Callable

from bench.harness import Figure, Settings

Benchmark = Callable[[Settings], list[Figure]]


def _lazy(module: str) -> Benchmark:
    def run(settings: Settings) -> list[Figure]:
        return importlib.import_module(module).run(settings)

    run.__name__ = module
    return run


def _in_child(module: str, settings: Settings) -> list[Figure]:
    import torch

    torch.set_num_threads(settings.threads)
    return importlib.import_module(module).run(settings)


def _isolated(module: str) -> Benchmark:
    """A benchmark that runs a Ray cluster, run in a child process: when the cluster is killed from outside
    (anyone's `ray stop --force` on a shared machine), Ray ends the process that drove it, and that must
    be the child, so the other benchmarks still run and the figures so far are kept."""
    def run(settings: Settings) -> list[Figure]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            try:
                return pool.submit(_in_child, module, settings).result()
            except BrokenProcessPool:
                raise RuntimeError(f"{module}'s process died; was its Ray cluster stopped from outside?") from None

    run.__name__ = module
    return run


BENCHMARKS: dict[str, Benchmark] = {
    "distribution": _isolated("bench.distribution"),
    "training": _lazy("bench.training_speed"),
    "compute": _lazy("bench.compute_efficiency"),
    "data": _lazy("bench.data_pipeline"),
    "scoring": _lazy("bench.scoring_speed"),
    "scheduling": _isolated("bench.scheduling"),
    "leaderboard": _lazy("bench.site_queries"),
    "detector": _lazy("bench.detector_speed"),
    "ranking": _lazy("bench.ranking_speed"),
    "gpu": _lazy("bench.gpu_check"),  # skipped where there is no CUDA GPU
    "class_metrics": _lazy("bench.class_metrics"),
    "site_load": _lazy("bench.site_load"),
    "gate": _lazy("bench.gate_speed"),
}

DESCRIPTIONS: dict[str, str] = {
    "distribution": "train images/s through the orchestrator (Ray task) / bare PyTorch loop; target >= 0.97",
    "training": "images/s of convbench's training step / plain eager step, and candidate CPU defaults; target >= 1.2",
    "compute": "achieved training FLOP/s (3x forward FLOPs) / measured fp32 GEMM peak, per architecture",
    "data": "ImageNet-layout JPEG loader images/s / ResNet-18 training images/s at the same size; target >= 2",
    "scoring": "50,000-image top-5 validate+score: <= 0.5 s and <= 3x pandas.read_csv; detection mAP <= 3 s; "
               "worst-case uploads near the 50 MB cap: <= 2 s and <= 8x the file in extra memory, 3 at once <= 1.2 GB",
    "scheduling": "tiny jobs through run_campaign: fixed cost per job <= 2 s, busy fraction >= 80%; vs TorchTrainer",
    "leaderboard": "page queries on 10,000 runs / 100,000 submissions (SQLite, PostgreSQL) <= 100 ms; render <= 1.5 s",
    "detector": "proposals/s per method, proposal cache hit cost, R-CNN inference images/s",
    "ranking": "paired-bootstrap rank intervals, 100 entries x 50,000 images x 1,000 replicates <= 2 s; "
               "audit verify of 100,000 rows (SQLite, PostgreSQL) <= 2 s",
    "gpu": "CUDA only: ResNet-50 224 px bf16 channels_last img/s through the orchestrator / a bare loop "
           "(target >= 0.9), and MFU against the GPU's bf16 peak; skipped without a GPU",
    "class_metrics": "evaluation images/s with the per-class counts (confusion, per-class top-k) / without; >= 0.98",
    "site_load": "50 websocket sessions open the Leaderboard at once, with / without the read cache: p95 <= 3 s",
    "gate": "50,000-row top-5 submission through the HTTP gate / in-process quota.submit: <= 3x; "
            "20 submissions at once: p99 <= 5 s",
}
