"""Where-the-errors-are bookkeeping: workers.train.evaluate with the per-class counts (confusion matrix and
per-class top-k hits, the final evaluation's) against the same evaluation counting top-k alone. Target: the
counting costs at most 2% of evaluation images/s, at 10 and at 1000 classes (ImageNet's confusion matrix is
10^6 counts per bincount)."""
from __future__ import annotations

from bench.environment import workload
from bench.harness import Figure, Settings, Target, compared, interleave, per_second
from bench.loops import convbench_setup, random_batches
from workers.metrics import TopKCounter
from workers.train import evaluate

TARGET = Target(">=", 0.98)


def run(settings: Settings) -> list[Figure]:
    arch, size, batch, steps = "resnet18", 64, settings.pick(64, 32), settings.pick(4, 2)
    figures = []
    for classes in (10, 1000):
        setup = convbench_setup(arch, size, batch, settings.workdir)
        batches = random_batches(steps, batch, size, num_classes=classes)
        images = steps * batch

        def plain(s=setup, b=batches, n=images) -> float:
            return per_second(n, lambda: evaluate(s, b))

        def by_class(s=setup, b=batches, c=classes, n=images) -> float:
            return per_second(n, lambda: evaluate(s, b, TopKCounter(num_classes=c)))

        samples = interleave({"top-k only": plain, "with per-class counts": by_class}, settings.repeats,
                             settings.warmup)
        work = workload(model=arch, input=size, batch=batch, steps=steps, classes=classes, threads=settings.threads,
                        device="cpu", data="in-memory batches")
        figures.append(compared("class_metrics", f"evaluation images/s with per-class counts, {classes} classes", work,
                                "img/s", samples, "with per-class counts", "top-k only", TARGET,
                                note="a 10-class model scoring 1000-class labels would be wrong; speed only"))
    return figures
