"""The metric registry: its declarations agree with the schema and the scorer, and adding a metric is one
declaration (here, in a test) from which the scores, the board, its exports and its page follow."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from db.engine import create_schema, session_scope
from db.schema import Challenge, HeldLabel, Run
from leaderboard.challenges import create_challenge
from leaderboard.queries import board_columns, leaderboard
from leaderboard.quota import submit
from leaderboard.scoring import (
    classification_scores,
    metric_value,
    primary_score,
    topk_errors,
)
from leaderboard.site_data import board_csv, board_json
from leaderboard.tokens import create_team
from workers.metric_registry import (
    METRICS,
    PRIMARY,
    Metric,
    column_metrics,
    rank_counts,
    resample_rank_counts,
)
from workers.prediction_format import DETECTION_CSV_HEADER, classification_header

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"num_classes": 10, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 10}


def mean_reciprocal_rank(counts: np.ndarray) -> np.ndarray:
    """1 / (rank + 1) of each image's first hit, 0 for a miss, averaged: a metric the registry lacks."""
    guesses = counts.shape[-1] - 1
    weights = 1.0 / np.arange(1, guesses + 1)
    return (counts[..., :guesses] * weights).sum(axis=-1) / np.maximum(counts.sum(axis=-1), 1)


# The one declaration. Higher is better and it is no percentage: both differ from every metric declared today.
MRR = Metric("mrr", "MRR", "mean reciprocal rank", "classification", mean_reciprocal_rank,
             bootstrap=resample_rank_counts, unit="", lower_is_better=False, board=True)


@pytest.fixture
def with_mrr(monkeypatch) -> Metric:
    monkeypatch.setitem(METRICS, MRR.name, MRR)
    return MRR


def random_guesses(n: int, n_classes: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    scores = rng.random((n, n_classes))
    scores[np.arange(n), labels] += rng.random(n) < 0.4
    return np.argsort(-scores, axis=1)[:, :k], labels


# --- the declarations ----------------------------------------------------------------------------------

def test_declarations_agree_with_the_schema_and_the_tasks() -> None:
    assert all(name == m.name for name, m in METRICS.items())
    assert {m.task for m in METRICS.values()} == set(PRIMARY)
    assert all(METRICS[name].task == task for task, name in PRIMARY.items())
    # Every `column` metric has its `runs` column, and the runs table has no metric column the registry lacks.
    run_columns = set(Run.__table__.columns.keys())
    assert set(column_metrics()) <= run_columns
    assert set(column_metrics()) == {"top1_err", "top5_err", "map50", "map_coco"}
    assert Challenge.__table__.columns["metric"].default.arg == PRIMARY["classification"]
    assert board_columns("classification") == ("top5_err", "top1_err")
    assert board_columns("detection") == ("map50", "map_coco")


def test_top_k_errors_come_from_the_rank_counts() -> None:
    guesses, labels = random_guesses(400, 12, 3, seed=0)
    counts = rank_counts(guesses, labels)
    for k in range(1, 6):
        by_loop = np.mean([label not in row[:k] for row, label in zip(guesses.tolist(), labels.tolist())])
        assert float(METRICS[f"top{k}_err"].compute(counts)) == pytest.approx(by_loop, abs=1e-12)
    np.testing.assert_array_equal(topk_errors(guesses, labels),
                                  [METRICS[f"top{k}_err"].compute(counts) for k in range(1, 6)])


def test_scores_keep_their_keys() -> None:
    guesses, labels = random_guesses(200, 10, 5, seed=1)
    scores = classification_scores(guesses, labels)
    assert list(scores) == ["n_images", "guesses", *(f"top{k}_err{ci}" for k in range(1, 6) for ci in ("", "_ci")),
                            "ci"]


def test_the_prediction_headers_are_defined_once() -> None:
    assert ",".join(classification_header(5)) == "image_id,pred_1,pred_2,pred_3,pred_4,pred_5"
    assert ",".join(DETECTION_CSV_HEADER) == "image_id,class_id,score,x1,y1,x2,y2"


def test_the_scorer_imports_no_torch() -> None:
    code = "import sys, leaderboard.scoring, workers.metric_registry; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=300)


# --- adding a metric is one declaration -------------------------------------------------------------------

def test_a_new_metric_is_scored_with_a_bootstrap_interval(monkeypatch) -> None:
    guesses, labels = random_guesses(500, 10, 5, seed=2)
    before = classification_scores(guesses, labels)
    monkeypatch.setitem(METRICS, MRR.name, MRR)
    scores = classification_scores(guesses, labels)
    ranks = [row.index(label) + 1 if label in row else None for row, label in zip(guesses.tolist(), labels.tolist())]
    assert scores["mrr"] == pytest.approx(np.mean([1 / r if r else 0.0 for r in ranks]))
    low, high = scores["mrr_ci"]
    assert low < scores["mrr"] < high
    # The existing metrics keep their values: the new one shares the same resampled counts.
    assert {k: v for k, v in scores.items() if not k.startswith("mrr")} == before
    # Higher is better: its primary score is 1 - value, and back.
    assert primary_score("mrr", 0.8) == pytest.approx(0.2) and metric_value("mrr", 0.2) == pytest.approx(0.8)


@pytest.fixture
def board_url(tmp_path, monkeypatch, with_mrr: Metric) -> str:
    """A classification challenge with two teams' uploads, scored with the new metric registered."""
    url = create_schema(f"sqlite:///{tmp_path / 'board.db'}")
    create_challenge(url, "syn", "synthetic", OPTIONS, title="Synthetic ten", quota=2)
    with session_scope(url) as session:
        tokens = [create_team(session, name) for name in ("alpha", "beta")]
        ids = sorted(session.scalars(sa.select(HeldLabel.image_id)).all())
    rng = np.random.default_rng(0)
    for token in tokens:
        lines = [",".join(classification_header(3))]
        lines += [f"{image_id}," + ",".join(map(str, rng.permutation(10)[:3])) for image_id in ids]
        submit(url, token, "syn", ("\n".join(lines) + "\n").encode(), "p.csv")
    monkeypatch.setenv("CONVBENCH_DB", url)
    return url


def test_a_new_metric_is_a_board_and_export_column(board_url: str) -> None:
    assert board_columns("classification") == ("top5_err", "top1_err", "mrr")
    board = leaderboard(board_url, "syn")
    assert board["mrr"].between(0, 1).all() and (board["mrr_lo"] <= board["mrr"]).all()
    exported = pd.read_csv(io.StringIO(board_csv(board, "classification")))
    assert list(exported.columns).index("mrr") < list(exported.columns).index("mrr_ci_low")
    assert list(exported["mrr"]) == pytest.approx(board["mrr"].round(6).tolist())  # unit "": not in percent
    entries = json.loads(board_json(board, {"slug": "syn", "task": "classification"}))["entries"]
    assert entries[0]["mrr"] == pytest.approx(board["mrr"][0]) and len(entries[0]["mrr_ci95"]) == 2
    app = AppTest.from_file(str(ROOT / "leaderboard" / "app.py"), default_timeout=60).run()
    assert not app.exception, app.exception
    table = app.dataframe[0].value
    assert "MRR" in table and "MRR 95% CI" in table  # its display name, with its interval
    assert list(table["MRR"]) == [f"{v:.2f}" for v in board["mrr"]]  # unit "": a number, in the site's precision
