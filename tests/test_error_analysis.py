"""Where the errors are: per-class errors and the confusion matrix of a run, its time to accuracy, a detector's
recall against proposal count, and the site's charts of them."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from leaderboard import error_analysis
from workers.context import RunContext
from workers.detection.map_metrics import recall_by_count
from workers.jobs import JobSpec
from workers.metrics import DENSE_CONFUSION_MAX, TopKCounter, class_report, encode_confusion, most_confused, time_to
from workers.train import train_classifier


def direct_counts(logits: torch.Tensor, targets: torch.Tensor, c: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The confusion matrix and per-class top-1/top-5 hits, image by image."""
    confusion = np.zeros((c, c), dtype=np.int64)
    hits = {1: np.zeros(c, dtype=np.int64), 5: np.zeros(c, dtype=np.int64)}
    for scores, label in zip(logits.tolist(), targets.tolist()):
        ranked = sorted(range(c), key=lambda j: -scores[j])
        confusion[label, ranked[0]] += 1
        for k, counts in hits.items():
            counts[label] += label in ranked[:k]
    return confusion, hits


def test_counter_per_class_counts_match_a_direct_count_over_batches():
    generator = torch.Generator().manual_seed(0)
    c = 7
    counter = TopKCounter(num_classes=c)
    all_logits, all_targets = [], []
    for n in (13, 1, 40):  # batches of uneven sizes
        logits, targets = torch.randn(n, c, generator=generator), torch.randint(c, (n,), generator=generator)
        counter.update(logits, targets)
        all_logits.append(logits)
        all_targets.append(targets)
    confusion, hits = counter.class_counts()
    expected, expected_hits = direct_counts(torch.cat(all_logits), torch.cat(all_targets), c)
    assert (confusion == expected).all() and confusion.sum() == 54
    assert (hits[1] == expected_hits[1]).all() and (hits[5] == expected_hits[5]).all()
    errors = counter.errors()
    assert errors[1] == pytest.approx(1 - np.trace(expected) / 54)

    report = class_report(confusion, hits, [f"c{i}" for i in range(c)])
    rows = expected.sum(axis=1)
    for i in range(c):
        if rows[i]:
            assert report["per_class"]["top1_err"][i] == pytest.approx(1 - expected[i, i] / rows[i], abs=1e-6)
            assert report["per_class"]["top5_err"][i] == pytest.approx(1 - expected_hits[5][i] / rows[i], abs=1e-6)
    assert report["confusion"] == expected.tolist() and report["class_names"][3] == "c3"
    json.dumps(report)  # what the runs table's JSON column takes


def test_most_confused_pairs_and_the_sparse_form_of_a_large_matrix():
    rng = np.random.default_rng(1)
    c = DENSE_CONFUSION_MAX + 20
    matrix = np.diag(rng.integers(5, 50, c))
    matrix[3, 7], matrix[100, 2], matrix[5, 6], matrix[6, 5] = 9, 12, 4, 4
    pairs = most_confused(matrix, count=3)
    assert [(p["true"], p["predicted"], p["images"]) for p in pairs] == [(100, 2, 12), (3, 7, 9), (5, 6, 4)]
    assert pairs[0]["share"] == pytest.approx(12 / matrix[100].sum())
    stored = encode_confusion(matrix)
    assert isinstance(stored, dict) and len(stored["cells"]) == 4  # the mistakes only, not 14,400 cells
    assert (error_analysis.confusion_array({"confusion": json.loads(json.dumps(stored))}) == matrix).all()
    # The heatmap of a large matrix keeps the classes with the most errors.
    cells = error_analysis.confusion_frame({"metrics": {"confusion": stored}}, limit=4)
    assert set(cells["true"]) == {"3", "5", "6", "100"} and len(cells) == 16
    assert most_confused(np.diag([3, 4])) == []


def test_time_to_reads_the_first_epoch_at_or_below_each_threshold():
    history = [{"epoch": 1, "val_top1_err": 0.7, "train_s": 10.0, "elapsed_s": 11.0},
               {"epoch": 2, "val_top1_err": 0.3, "train_s": 20.0, "elapsed_s": 22.5},
               {"epoch": 3, "val_top1_err": 0.4, "train_s": 30.0, "elapsed_s": 33.0},
               {"epoch": 4, "val_top1_err": 0.09, "train_s": 40.0, "elapsed_s": 44.0}]
    found = {entry["threshold"]: entry for entry in time_to(history)}
    assert (found[0.5]["epoch"], found[0.5]["train_s"], found[0.5]["elapsed_s"]) == (2, 20.0, 22.5)
    assert found[0.25]["epoch"] == 4 and found[0.1]["epoch"] == 4
    assert found[0.05]["epoch"] is None and found[0.05]["train_s"] is None


def test_recall_by_count_matches_recall_of_the_first_n_proposals():
    from workers.detection.map_metrics import proposal_recall

    generator = torch.Generator().manual_seed(2)

    def boxes(n: int) -> torch.Tensor:
        xy = torch.rand(n, 2, generator=generator) * 80
        return torch.cat([xy, xy + 10 + torch.rand(n, 2, generator=generator) * 30], dim=1)

    proposals, gt = [boxes(60), boxes(25), boxes(0)], [boxes(3), boxes(2), boxes(1)]
    # Near-copies of ground-truth boxes at known ranks: image 0's three at ranks 5, 15 and 40, image 1's first at 0.
    for image, box, rank in ((0, 0, 5), (0, 1, 15), (0, 2, 40), (1, 0, 0)):
        proposals[image][rank] = gt[image][box] + 1.0
    found = recall_by_count(proposals, gt, counts=(1, 10, 20, 50, 100))
    assert set(found) == {"recall@0.5@1", "recall@0.5@10", "recall@0.5@20", "recall@0.5@50"}  # 100 > any image's
    for n in (1, 10, 20, 50):
        direct = proposal_recall([p[:n] for p in proposals], gt, thresholds=(0.5,))["recall@0.5"]
        assert found[f"recall@0.5@{n}"] == pytest.approx(direct)
    values = [found[f"recall@0.5@{n}"] for n in (1, 10, 20, 50)]
    assert values == sorted(values)  # more proposals never cover fewer boxes
    assert values[0] >= 1 / 6 and values[1] >= 2 / 6 and values[2] >= 3 / 6 and values[3] >= 4 / 6

    runs = pd.DataFrame([{"job_id": "abcdef123", "arch": "alexnet",
                          "metrics": {"proposals": {"selective_search": {"recall@0.5": 0.9, **found}}}}])
    frame = error_analysis.recall_by_count_frame(runs)
    assert sorted(frame["proposals"]) == [1, 10, 20, 50] and (frame["method"] == "selective_search").all()
    assert error_analysis.recall_by_count_chart(runs).to_dict()["mark"]["type"] == "line"


@pytest.mark.slow
def test_a_run_stores_where_its_errors_are_and_when_they_fell(tmp_path):
    torch.set_num_threads(2)
    options = {"num_classes": 4, "image_size": 32, "train_per_class": 8, "val_per_class": 10, "test_per_class": 1}
    spec = JobSpec(suite="test", task="classification", arch="resnet18", dataset="synthetic", dataset_options=options,
                   recipe={"epochs": 2, "batch_size": 16, "lr": 0.1, "eval_crop": 1.0}, seed=0, input_size=32,
                   storage=str(tmp_path))
    result = train_classifier(spec, RunContext(job_id=spec.job_id, storage=spec.folder))
    metrics = result["metrics"]
    confusion = np.asarray(metrics["confusion"])
    assert confusion.shape == (4, 4) and confusion.sum() == metrics["val_images"] == 40
    assert 1 - np.trace(confusion) / 40 == pytest.approx(result["top1_err"])  # the same evaluation as the figure
    assert metrics["per_class"]["images"] == [10, 10, 10, 10] and metrics["confusion_split"] == "val"
    per_class = metrics["per_class"]["top1_err"]
    assert np.mean(per_class) == pytest.approx(result["top1_err"])  # balanced classes: the mean of the classes
    assert all(p["true"] != p["predicted"] for p in metrics["most_confused"])
    times = [h["train_s"] for h in result["history"]]
    assert 0 < times[0] < times[1] and all(h["elapsed_s"] >= h["train_s"] for h in result["history"])
    assert [t["threshold"] for t in metrics["time_to"]] == [0.5, 0.25, 0.1, 0.05]
    json.dumps(metrics)

    # The site's views of that row.
    run = {"job_id": spec.job_id, "arch": "resnet18", "dataset": "synthetic", "seed": 0, "metrics": metrics,
           "history": result["history"]}
    heatmap = error_analysis.confusion_heatmap(run)
    spec_dict = heatmap.to_dict()
    assert spec_dict["mark"]["type"] == "rect"
    assert sum(row["images"] for row in spec_dict["datasets"][next(iter(spec_dict["datasets"]))]) == 40
    table = error_analysis.per_class_frame(run)
    assert len(table) == 4 and list(table["top1_err"]) == sorted(per_class, reverse=True)
    names = set(error_analysis.class_names(metrics, 4))
    assert set(error_analysis.most_confused_frame(run)["true class"]) <= names
    histories = pd.DataFrame([{"job_id": spec.job_id, "arch": "resnet18", "dataset": "synthetic", "seed": 0, **h}
                              for h in result["history"]])
    assert error_analysis.error_vs_time_chart(histories).to_dict()["mark"]["type"] == "line"
    assert len(error_analysis.time_to_frame(pd.DataFrame([run]))) == 4
    # A row from before any of this was recorded: nothing to show, no failure.
    old = {"job_id": "x", "metrics": {"top1_err": 0.5}, "history": [{"epoch": 1, "val_top1_err": 0.5}]}
    assert error_analysis.confusion_heatmap(old) is None and error_analysis.per_class_frame(old).empty
    assert error_analysis.most_confused_frame(old).empty
