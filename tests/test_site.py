"""The Streamlit site, page by page (AppTest, in process), on a populated SQLite database.

Also invariant 1 end to end: no page and no export shows a held test label.
"""
from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from gate_server import serving
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Dataframe, Table

from db.engine import create_schema, session_scope
from db.schema import Challenge, HeldLabel, Run, Submission, Team
from leaderboard.challenges import create_challenge
from leaderboard.gate_client import GATE_URL_ENV
from leaderboard.queries import (
    architectures_frame,
    campaign_frame,
    detection_frame,
    leaderboard,
    run_record,
    team_submissions,
    time_to_runs,
)
from leaderboard.quota import submit
from leaderboard.site_data import TIMM_COLUMNS, board_csv, board_json
from leaderboard.tokens import create_team

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "leaderboard" / "app.py")
OPTIONS = {"num_classes": 10, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 20}
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)  # in the past: these uploads leave every quota window open
BASELINE_TEAM = "convbench baselines"
# (arch, family, top-1 hit rate, top-5 hit rate on the test split, params, FLOPs, val top-1 err, val top-5 err)
BASELINES = [
    ("resnet18", "resnet", 0.80, 0.97, 11_181_642, 1.82e9, 0.22, 0.04),
    ("vgg11", "vgg", 0.55, 0.80, 128_807_306, 7.6e9, 0.41, 0.18),
    ("alexnet", "alexnet", 0.35, 0.62, 57_044_810, 0.71e9, 0.63, 0.37),
]
# (team, top-1 hit rate, top-5 hit rate, days after T0, entry name)
TEAM_UPLOADS = [
    ("alpha", 0.50, 0.75, 0, "first try"),
    ("alpha", 0.70, 0.90, 1, "deeper net"),
    ("beta", 0.05, 0.20, 2, "random-ish"),
]
EXPECTED_BOARD = ["resnet18", "deeper net", "vgg11", "alexnet", "random-ish"]  # entries by the names they were given


def predictions(labels: dict[str, int], top1: float, top5: float, seed: int) -> bytes:
    """A top-5 file: the label first on about `top1` of the images, among the five on about `top5`."""
    rng = np.random.default_rng(seed)
    lines = ["image_id,pred_1,pred_2,pred_3,pred_4,pred_5"]
    for image_id, label in labels.items():
        others = [c for c in rng.permutation(OPTIONS["num_classes"]).tolist() if c != label]
        draw = rng.random()
        position = 0 if draw < top1 else int(rng.integers(1, 5)) if draw < top5 else None
        guesses = others[:5] if position is None else others[:position] + [label] + others[position:4]
        lines.append(f"{image_id}," + ",".join(map(str, guesses)))
    return ("\n".join(lines) + "\n").encode()


def held_labels(url: str, slug: str = "syn") -> dict[str, int]:
    """The test labels, read the way only the scorer may: here, to check that no page shows them."""
    with session_scope(url) as session:
        rows = session.execute(sa.select(HeldLabel.image_id, HeldLabel.label).join(Challenge)
                               .where(Challenge.slug == slug).order_by(HeldLabel.image_id)).all()
    return dict(rows)


def provenance(tmp: Path, arch: str) -> dict:
    folder = tmp / "runs" / arch
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "log.txt"
    log.write_text(f"epoch 1/3: train_loss=2.1\nepoch 3/3: train_loss=0.9\nfinished {arch} cleanly\n")
    (folder / "checkpoint_3.pt").write_bytes(b"")
    return {"git_commit": "0f1e2d3c4b5a69788796a5b4c3d2e1f0a1b2c3d4", "versions": {"torch": "2.14.1", "python": "3.11.9"},
            "hardware": "Test CPU, 2 threads", "node": f"node-{arch}", "launcher": "task",
            "checkpoint": str(folder / "checkpoint_3.pt"), "log_path": str(log), "log_text": log.read_text()}


def classification_run(tmp: Path, arch: str, family: str, params: int, flops: float, top1: float,
                       top5: float) -> Run:
    history = [{"epoch": e, "train_loss": 2.4 / e, "val_top1_err": top1 + 0.1 * (3 - e), "val_top5_err": top5,
                "images_per_s": 900.0, "lr": 0.1 / e} for e in (1, 2, 3)]
    config = {"suite": "smoke", "task": "classification", "arch": arch, "dataset": "synthetic",
              "dataset_options": OPTIONS, "recipe": {"epochs": 3, "lr": 0.1, "batch_size": 32}, "seed": 0,
              "input_size": 32, "resources": {"cpus": 1.0, "gpus": 0.0, "workers": 1}}
    return Run(job_id=f"job-{arch}", suite="smoke", task="classification", arch=arch, family=family,
               dataset="synthetic", seed=0, state="done", attempts=1, epochs_done=3, top1_err=top1, top5_err=top5,
               metrics={"top1_err": top1, "top5_err": top5, "val_images": 10}, history=history, params=params,
               flops=flops, input_size=32, train_ips=900.0, eval_ips=2500.0, wall_s=42.0, peak_mem_mb=512.0,
               config=config, created_at=T0 - timedelta(days=2), started_at=T0 - timedelta(days=2, minutes=-1),
               finished_at=T0 - timedelta(days=1), **provenance(tmp, arch))


ANALYSED = "job-resnet18"  # the run whose metrics say where its errors are; the others are from before
CLASS_NAMES = [f"shape {i}" for i in range(OPTIONS["num_classes"])]
# Off-diagonal cells (true, predicted) -> images of a 10-class confusion matrix with 50 validation images a
# class: 110 mistakes, resnet18's 22% top-1 error; (3, 5) the most confused pair.
MISTAKES = {(3, 5): 17, (5, 3): 12, (8, 1): 11, (1, 8): 9, (2, 7): 9, (7, 2): 8, (0, 9): 7, (9, 0): 6, (4, 6): 6,
            (6, 4): 5, (3, 8): 5, (2, 1): 4, (6, 0): 4, (4, 1): 3, (9, 5): 3, (0, 3): 1}


def error_report() -> dict:
    """What workers.metrics.class_report and time_to store for a run (test_error_analysis checks that shape
    against a trained run): per-class errors, the confusion matrix, the most-confused pairs, time to accuracy."""
    c, per_class = OPTIONS["num_classes"], 50
    confusion = np.zeros((c, c), dtype=int)
    for (true, predicted), images in MISTAKES.items():
        confusion[true, predicted] = images
    np.fill_diagonal(confusion, per_class - confusion.sum(axis=1))
    top1_err = 1 - np.diag(confusion) / per_class
    top5_err = [round(float((per_class - confusion[i, i]) // 3) / per_class, 6) for i in range(c)]
    pairs = sorted(MISTAKES.items(), key=lambda item: -item[1])[:10]
    return {"val_images": c * per_class, "confusion_split": "val", "class_names": CLASS_NAMES,
            "per_class": {"images": [per_class] * c, "top1_err": [round(float(e), 6) for e in top1_err],
                          "top5_err": top5_err},
            "confusion": confusion.tolist(),
            "most_confused": [{"true": t, "predicted": p, "images": n, "share": round(n / per_class, 6)}
                              for (t, p), n in pairs],
            # History 0.42, 0.32, 0.22 (classification_run): 50% at epoch 1, 25% at epoch 3, 10% and 5% never.
            "time_to": [{"metric": "val_top1_err", "threshold": t, "epoch": e, "train_s": s, "elapsed_s": el}
                        for t, e, s, el in ((0.5, 1, 14.0, 15.2), (0.25, 3, 42.0, 46.25), (0.1, None, None, None),
                                            (0.05, None, None, None))]}


def detection_runs(tmp: Path) -> list[Run]:
    metrics = {"detector": "rcnn", "ap50": {"circle": 0.8, "square": 0.55, "triangle": 0.51},
               "ap_coco": {"circle": 0.41, "square": 0.3, "triangle": 0.22},
               "proposals": {"selective_search": {"recall@0.5": 0.93, "recall@0.7": 0.71, "per_image": 1800.0,
                                                  "seconds_per_image": 0.9, "recall@0.5@10": 0.31,
                                                  "recall@0.5@100": 0.74, "recall@0.5@1000": 0.9},
                             "sliding_window": {"recall@0.5": 0.64, "recall@0.7": 0.22, "per_image": 900.0,
                                                "seconds_per_image": 0.01, "recall@0.5@10": 0.04,
                                                "recall@0.5@100": 0.27}},
               "map50_by_proposals": {"selective_search": 0.62, "sliding_window": 0.37}}
    common = {"suite": "voc", "task": "detection", "family": "detector", "dataset": "synthetic-scenes", "seed": 0,
              "state": "done", "params": 57_000_000, "flops": 2.9e11, "input_size": 224,
              "finished_at": T0 - timedelta(hours=5)}
    return [Run(job_id="job-rcnn", arch="rcnn_alexnet", map50=0.62, map_coco=0.31, metrics=metrics,
                history=[{"epoch": 1, "train_loss": 0.8, "val_map50": 0.55}], **common, **provenance(tmp, "rcnn")),
            # A run from before per-class AP and proposal statistics were recorded: pages must cope.
            Run(job_id="job-rcnn-old", arch="rcnn_vgg16", map50=0.48, map_coco=None, metrics={}, **common)]


def campaign_runs() -> list[Run]:
    return [Run(job_id="job-queued", suite="cpu", arch="densenet121", family="densenet", dataset="digits",
                state="queued", created_at=T0),
            Run(job_id="job-running", suite="cpu", arch="googlenet", family="googlenet", dataset="digits",
                state="running", attempts=1, epochs_done=1, node="node-2", created_at=T0, started_at=T0),
            Run(job_id="job-failed", suite="cpu", arch="inception_v3", family="inception", dataset="digits",
                state="failed", attempts=2, error="RuntimeError: input 32 is below inception_v3's minimum size 75",
                created_at=T0, started_at=T0)]


def add_detection_board(url: str) -> None:
    """A detection challenge with scored entries written directly (its scorer is tested elsewhere)."""
    with session_scope(url) as session:
        challenge = Challenge(slug="scenes", title="Synthetic scenes", task="detection", dataset="synthetic-scenes",
                              class_names=["circle", "square", "triangle"], metric="map50", quota=2)
        session.add(challenge)
        session.flush()
        teams = {t.name: t.id for t in session.scalars(sa.select(Team))}
        for team, run_id, label, value in ((BASELINE_TEAM, "job-rcnn", "rcnn_alexnet", 0.6),
                                           ("alpha", None, "my detector", 0.45)):
            session.add(Submission(team_id=teams[team], challenge_id=challenge.id, run_id=run_id, label=label,
                                   file_sha256="0" * 64, n_rows=10, primary_score=1 - value, created_at=T0,
                                   scores={"metric": "map50", "map50": value, "map_coco": value / 2,
                                           "ap50_per_class": {"circle": value}}))


def populate(url: str, tmp: Path) -> dict[str, str]:
    """A challenge, three teams and the baseline team, runs in every state, scored submissions; returns tokens."""
    create_schema(url)
    # Every test image public: these tests are about what the pages show (leaderboard.parts has its own tests),
    # and a split drawn from a secret seed would move the intervals they compare from run to run.
    create_challenge(url, "syn", "synthetic", OPTIONS, title="Synthetic ten", quota=2, public_fraction=1.0)
    with session_scope(url) as session:
        tokens = {name: create_team(session, name) for name in ("alpha", "beta", "delta")}
        create_team(session, BASELINE_TEAM, official=True)
        for arch, family, _, _, params, flops, top1, top5 in BASELINES:
            run = classification_run(tmp, arch, family, params, flops, top1, top5)
            if run.job_id == ANALYSED:
                run.metrics = {**run.metrics, **error_report()}
            session.add(run)
        session.add_all(detection_runs(tmp) + campaign_runs())
    labels = held_labels(url)
    with session_scope(url) as session:
        baselines = session.scalar(sa.select(Team).where(Team.name == BASELINE_TEAM))
    for i, (arch, _, top1, top5, *_) in enumerate(BASELINES):
        submit(url, baselines, "syn", predictions(labels, top1, top5, seed=i), "p.csv", label=arch,
               run_id=f"job-{arch}", now=T0 - timedelta(hours=i))
    for i, (team, top1, top5, days, label) in enumerate(TEAM_UPLOADS):
        submit(url, tokens[team], "syn", predictions(labels, top1, top5, seed=10 + i), "p.csv", label=label,
               now=T0 + timedelta(days=days))
    add_detection_board(url)
    return tokens


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[str, dict[str, str], Path]:
    """One populated database for the module: scoring the uploads is the slow part, and pages only read."""
    tmp = tmp_path_factory.mktemp("site")
    url = f"sqlite:///{tmp / 'site.db'}"
    return url, populate(url, tmp), tmp


@pytest.fixture
def url(site, monkeypatch) -> str:
    monkeypatch.setenv("CONVBENCH_DB", site[0])
    return site[0]


@pytest.fixture
def fresh_url(tmp_path, monkeypatch) -> Iterator[tuple[str, dict[str, str]]]:
    """A database of its own, for tests that submit (they change the board and use quota), and the submission gate
    serving it (uvicorn on a free local port), which the Submit page posts to."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    tokens = populate(url, tmp_path)
    monkeypatch.setenv("CONVBENCH_DB", url)
    with serving(url) as gate:
        monkeypatch.setenv(GATE_URL_ENV, gate)
        yield url, tokens


def percent_value(text: str) -> float:
    """A table's percentage text ("12.50%") as the fraction it shows."""
    return float(text.rstrip("%")) / 100


def open_page(page: str | None = None, **query: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception, app.exception
    if page is not None:
        app.switch_page(f"views/{page}.py")
        app.query_params.update(query)
        app.run()
        assert not app.exception, app.exception
    return app


def texts(app: AppTest) -> str:
    """Every string an element carries: markdown, alerts, metrics, JSON, code, table cells, widget labels."""
    parts = []

    def visit(node) -> None:
        if isinstance(node, (Dataframe, Table)):
            parts.append(node.value.to_csv(index=False))
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        for child in getattr(node, "children", {}).values():
            visit(child)

    visit(app._tree)  # the whole tree, sidebar and expanders included: the public accessors cover one kind each
    return "\n".join(parts)


# --- Leaderboard -----------------------------------------------------------------------------------

def test_leaderboard_ranks_best_entry_per_team_with_cis(url: str) -> None:
    app = open_page()
    assert app.title[0].value == "Leaderboard" and app.selectbox[0].value == "syn"
    table = app.dataframe[0].value
    assert list(table["entry"]) == EXPECTED_BOARD
    assert list(table["rank"]) == [1, 2, 3, 4, 5]
    assert list(table["baseline"]) == [True, False, True, True, False]
    assert list(table["team"]) == [BASELINE_TEAM, "alpha", BASELINE_TEAM, BASELINE_TEAM, "beta"]
    errors = [percent_value(e) for e in table["top-5 err"]]  # shown as text, in the site's one format
    assert errors == sorted(errors) and all(0 <= e <= 1 for e in errors)
    assert all(re.fullmatch(r"\d+\.\d\d%", e) for e in table["top-5 err"])
    with session_scope(url) as session:
        best = session.scalars(sa.select(Submission.primary_score).join(Team)
                               .where(Team.name == "alpha", Submission.challenge_id == 1)).all()
    assert table["top-5 err"][1] == f"{100 * min(best):.2f}%"  # alpha's better upload, not its first
    assert table["params (M)"][0] == "11.18" and table["GFLOPs"][0] == "1.82"
    assert table["params (M)"][1] == ""  # a team's upload has no run behind it: a blank cell, not "None"
    assert list(table["vs leader"]) == ["leader", "not significantly different", "significantly behind",
                                       "significantly behind", "significantly behind"]
    assert table["run"][0] == "run?job=job-resnet18" and pd.isna(table["run"][1])
    assert all(re.fullmatch(r"\d+\.\d\d–\d+\.\d\d%", ci) for ci in table["top-5 err 95% CI"])
    assert "mAP@0.5" not in table  # no metric column that is empty on every row
    assert [b.label for b in app.get("download_button")] == ["Export CSV", "Export JSON"]


def test_not_significantly_different_follows_the_intervals(url: str) -> None:
    board = leaderboard(url, "syn")
    top_lo, top_hi = board["top5_err_lo"][0], board["top5_err_hi"][0]
    for _, row in board.iloc[1:].iterrows():
        overlaps = row["top5_err_lo"] <= top_hi and top_lo <= row["top5_err_hi"]
        assert row["vs_leader"] == ("not significantly different" if overlaps else "significantly behind")
    assert board["top5_err_lo"][0] <= board["top5_err"][0] <= board["top5_err_hi"][0]


def test_every_submission_toggle_and_detection_board(url: str) -> None:
    app = open_page()
    app.toggle[0].set_value(True).run()
    table = app.dataframe[0].value
    assert list(table["team"]).count("alpha") == 2 and len(table) == 6
    assert {"first try", "deeper net"} <= set(table["entry"])  # alpha's two entries, told apart by their names
    app.toggle[0].set_value(False)
    app.selectbox[0].set_value("scenes").run()
    assert not app.exception
    table = app.dataframe[0].value
    assert list(table["entry"]) == ["rcnn_alexnet", "my detector"]
    assert list(table["mAP@0.5"]) == ["60.00%", "45.00%"]
    assert list(table["mAP@[.5:.95]"]) == ["30.00%", "22.50%"]
    assert "mAP@0.5 95% CI" not in table  # the detection scorer gives no interval; nothing is made up
    assert list(table["vs leader"]) == ["leader", ""]


def test_classification_csv_export_is_timm_style(url: str) -> None:
    board = leaderboard(url, "syn")
    csv = pd.read_csv(io.StringIO(board_csv(board, "classification")))
    assert tuple(csv.columns[:len(TIMM_COLUMNS)]) == TIMM_COLUMNS
    assert list(csv["model"]) == EXPECTED_BOARD
    assert list(csv["top5_err"]) == pytest.approx([round(100 * e, 3) for e in board["top5_err"]])
    assert list(csv["top1"] + csv["top1_err"]) == pytest.approx([100.0] * len(csv))
    assert csv["param_count"][0] == pytest.approx(11.18) and csv["img_size"][0] == 32
    assert csv["gflops"][0] == pytest.approx(1.82)
    assert (csv["top5_err_ci_low"] <= csv["top5_err"]).all() and (csv["top5_err"] <= csv["top5_err_ci_high"]).all()
    assert list(csv["run_id"].fillna("")) == ["job-resnet18", "", "job-vgg11", "job-alexnet", ""]


def test_json_export_and_detection_csv(url: str) -> None:
    board = leaderboard(url, "syn")
    data = json.loads(board_json(board, {"slug": "syn", "title": "Synthetic ten", "task": "classification",
                                         "dataset": "synthetic", "metric": "top5_err", "quota": 2}))
    assert data["challenge"] == {"slug": "syn", "title": "Synthetic ten", "task": "classification",
                                 "dataset": "synthetic", "metric": "top5_err"}
    entries = data["entries"]
    assert [e["entry"] for e in entries] == EXPECTED_BOARD and [e["rank"] for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0]["top5_err"] == pytest.approx(board["top5_err"][0])
    assert entries[0]["top5_err_ci95"] == pytest.approx([board["top5_err_lo"][0], board["top5_err_hi"][0]])
    assert entries[1]["params"] is None and entries[0]["params"] == 11_181_642
    assert entries[0]["submitted"].startswith("2025-03-01")
    detection = pd.read_csv(io.StringIO(board_csv(leaderboard(url, "scenes"), "detection")))
    assert list(detection["model"]) == ["rcnn_alexnet", "my detector"]
    assert list(detection["map50"]) == pytest.approx([60.0, 45.0])
    assert detection["map50_ci_low"].isna().all()


def test_without_a_challenge_the_default_page_ranks_runs_by_validation(tmp_path, monkeypatch) -> None:
    url = create_schema(f"sqlite:///{tmp_path / 'runs.db'}")
    with session_scope(url) as session:
        for arch, family, _, _, params, flops, top1, top5 in BASELINES:
            session.add(classification_run(tmp_path, arch, family, params, flops, top1, top5))
    monkeypatch.setenv("CONVBENCH_DB", url)
    app = open_page()
    assert "No challenge is open yet" in app.info[0].value
    assert list(app.dataframe[0].value["architecture"]) == ["resnet18", "vgg11", "alexnet"]


def test_page_queries_agree_on_both_databases(db_url: str, tmp_path) -> None:
    """The board's window query and the other page queries, on SQLite and PostgreSQL alike."""
    populate(db_url, tmp_path)
    board = leaderboard(db_url, "syn")
    assert list(board["entry"]) == EXPECTED_BOARD and board["submitted"].dt.tz is not None
    assert len(leaderboard(db_url, "syn", best_only=False)) == 6
    assert list(leaderboard(db_url, "scenes")["entry"]) == ["rcnn_alexnet", "my detector"]
    assert list(team_submissions(db_url, "alpha")["label"]) == ["deeper net", "my detector", "first try"]
    assert list(architectures_frame(db_url)["arch"][:3]) == ["resnet18", "vgg11", "alexnet"]
    assert sorted(campaign_frame(db_url)["state"].value_counts().items()) == [
        ("done", 5), ("failed", 1), ("queued", 1), ("running", 1)]
    assert list(detection_frame(db_url)["job_id"]) == ["job-rcnn", "job-rcnn-old"]
    assert run_record(db_url, "job-vgg11")["git_commit"].startswith("0f1e2d3c") and run_record(db_url, "x") is None


# --- Architectures, Detection ----------------------------------------------------------------------

def test_architectures_lists_finished_runs_filters_and_charts(url: str) -> None:
    app = open_page("architectures")
    table = app.dataframe[0].value
    assert list(table["architecture"]) == ["resnet18", "vgg11", "alexnet", "rcnn_alexnet", "rcnn_vgg16"]
    assert set(table["job"]).isdisjoint({"job-queued", "job-running", "job-failed"})
    charts = app.get("vega_lite_chart")
    assert len(charts) == 4  # error vs GFLOPs, vs training time, learning curves of two series
    specs = [json.loads(c.proto.spec) for c in charts]
    assert "gflops" in json.dumps(specs[0]) and "wall_s" in json.dumps(specs[1])
    families = app.multiselect[1]
    assert families.label == "Family"
    families.set_value(["resnet"]).run()
    assert list(app.dataframe[0].value["architecture"]) == ["resnet18"]
    runs = app.multiselect[3]
    assert runs.label == "Runs" and runs.value == ["job-resnet18"]
    assert app.multiselect[4].label == "Series" and app.multiselect[4].value == ["val_top1_err", "val_top5_err"]


def timed_runs(tmp: Path) -> list[Run]:
    """Finished runs with their training seconds per epoch and time to accuracy (two resnet18 seeds, one
    alexnet), one from before either was recorded (vgg11), and a failed one that recorded them."""
    runs = []
    for arch, family, seed, errors, seconds in (("resnet18", "resnet", 0, (0.45, 0.2, 0.15), (10.0, 20.0, 30.0)),
                                                ("resnet18", "resnet", 1, (0.48, 0.3, 0.26), (12.0, 24.0, 36.0)),
                                                ("alexnet", "alexnet", 0, (0.7, 0.55, 0.4), (20.0, 40.0, 60.0))):
        run = classification_run(tmp, arch, family, 11_181_642, 1.82e9, errors[-1], errors[-1] / 3)
        run.job_id, run.seed = f"job-{arch}-{seed}", seed
        run.history = [{"epoch": e, "val_top1_err": err, "train_s": t, "elapsed_s": t + 1.0}
                       for e, (err, t) in enumerate(zip(errors, seconds), start=1)]
        firsts = {t: next((h for h in run.history if h["val_top1_err"] <= t), None) for t in (0.5, 0.25, 0.1, 0.05)}
        run.metrics = {**run.metrics, "time_to": [
            {"metric": "val_top1_err", "threshold": t, "epoch": h and h["epoch"], "train_s": h and h["train_s"],
             "elapsed_s": h and h["elapsed_s"]} for t, h in firsts.items()]}
        runs.append(run)
    failed = classification_run(tmp, "densenet121", "densenet", 7_978_856, 2.9e9, 0.3, 0.1)
    failed.state, failed.metrics = "failed", runs[0].metrics
    return [*runs, classification_run(tmp, "vgg11", "vgg", 128_807_306, 7.6e9, 0.41, 0.18), failed]


def test_architectures_time_to_accuracy_and_error_against_training_time(tmp_path, monkeypatch) -> None:
    url = create_schema(f"sqlite:///{tmp_path / 'timed.db'}")
    with session_scope(url) as session:
        session.add_all(timed_runs(tmp_path))
    monkeypatch.setenv("CONVBENCH_DB", url)
    app = open_page("architectures")
    assert any(h.value == "Time to accuracy" for h in app.subheader)
    table = frame_with(app, "to 50.00% top-1 err")
    # The median over the runs that got there, and how many did; blank where none did; quickest to the
    # hardest threshold reached first. vgg11 recorded nothing, densenet121 did not finish: neither is listed.
    assert list(table["architecture"]) == ["resnet18", "alexnet"] and list(table["runs"]) == ["2", "1"]
    assert list(table["to 50.00% top-1 err"]) == ["11 s", "1 min 00 s"]
    assert list(table["to 25.00% top-1 err"]) == ["20 s (1 of 2 runs)", ""]
    assert list(table["to 10.00% top-1 err"]) == ["", ""] and list(table["to 5.00% top-1 err"]) == ["", ""]
    # Beside the curves by epoch, the chosen runs' validation error against the seconds they trained.
    (timed,) = [c for c in app.get("vega_lite_chart") if "training seconds" in c.proto.spec]
    rows = chart_rows(timed)
    assert sorted(zip(rows["train_s"], rows["top-1 error (%)"].round(6))) == [
        (10.0, 45.0), (12.0, 48.0), (20.0, 20.0), (20.0, 70.0), (24.0, 30.0), (30.0, 15.0), (36.0, 26.0),
        (40.0, 55.0), (60.0, 40.0)]
    # Runs from before: no section, no chart, no error.
    app.multiselect[1].set_value(["vgg"]).run()
    assert not app.exception and not [h for h in app.subheader if h.value == "Time to accuracy"]
    assert not [c for c in app.get("vega_lite_chart") if "training seconds" in c.proto.spec]


def test_time_to_runs_reads_only_its_json_path_on_both_databases(db_url: str, tmp_path) -> None:
    create_schema(db_url)
    with session_scope(db_url) as session:
        session.add_all(timed_runs(tmp_path))
    runs = time_to_runs(db_url)
    assert list(runs["job_id"]) == ["job-alexnet-0", "job-resnet18-0", "job-resnet18-1"]
    assert [t["threshold"] for t in runs["time_to"][1]] == [0.5, 0.25, 0.1, 0.05]
    assert runs["time_to"][1][1]["train_s"] == 20.0 and runs["time_to"][2][1]["epoch"] is None
    assert list(time_to_runs(db_url, families=["alexnet"])["job_id"]) == ["job-alexnet-0"]
    assert time_to_runs(db_url, families=["vgg"]).empty


def test_detection_page_per_class_and_proposals(url: str) -> None:
    app = open_page("detection")
    overall = app.dataframe[0].value
    assert list(overall["mAP@0.5"]) == ["62.00%", "48.00%"]
    per_class = app.dataframe[1].value
    assert list(per_class["class"]) == ["circle", "square", "triangle"]
    assert per_class.iloc[:, 1].tolist() == ["80.00%", "55.00%", "51.00%"]  # in %, as the chart beside it
    recall = app.dataframe[2].value
    assert list(recall["method"]) == ["selective search", "sliding window"]
    assert list(recall["recall@0.5"]) == ["93.00%", "64.00%"]
    assert list(recall["mAP@0.5 with these"]) == ["62.00%", "37.00%"]


# --- Submit ---------------------------------------------------------------------------------------

def fill_form(app: AppTest, token: str, data: bytes | None = None, label: str = "") -> AppTest:
    app.text_input(key="token").input(token)
    if data is not None:
        app.file_uploader[0].set_value(("preds.csv", data, "text/csv"))
    app.text_input(key="label").input(label)
    return app


def submit_button(app: AppTest, name: str):
    return next(b for b in app.button if b.label == name)


def rank_of(url: str, submission_id: int) -> int:
    board = leaderboard(url, "syn", best_only=True, limit=None)
    return int(board.loc[board["submission_id"] == submission_id, "rank"].iloc[0])


def send(app: AppTest) -> AppTest:
    """The form's Submit, then the confirmation's send: what a person clicks to upload."""
    submit_button(app, "Submit").click().run()
    assert not app.error, [e.value for e in app.error]
    submit_button(app, "Confirm and send").click().run()
    return app


def test_submit_with_a_wrong_token_shows_the_error(fresh_url) -> None:
    url, tokens = fresh_url
    app = open_page("submit")
    data = predictions(held_labels(url), 0.5, 0.8, seed=99)
    fill_form(app, tokens["delta"][:-2] + "xx", data)
    submit_button(app, "Submit").click().run()
    assert [e.value for e in app.error] == ["invalid or revoked token"]
    assert not app.success and not app.dataframe
    with session_scope(url) as session:
        assert session.scalar(sa.select(sa.func.count(Submission.id)).join(Team).where(Team.name == "delta")) == 0


def test_submit_scores_at_once_and_shows_quota_and_history(fresh_url) -> None:
    url, tokens = fresh_url
    app = open_page("submit")
    fill_form(app, tokens["delta"], b"image_id,pred_1\ntest_000000,3\n")
    send(app)
    assert len(app.error) == 1 and "missing" in app.error[0].value  # validation, inline; nothing counted
    data = predictions(held_labels(url), 0.6, 0.9, seed=7)
    fill_form(app, tokens["delta"], data, label="resnet-ish")
    submit_button(app, "Submit").click().run()
    # The confirmation says what the upload spends before anything is sent.
    assert any("**2** left now, **1** after it" in m.value for m in app.markdown)
    with session_scope(url) as session:
        assert session.scalar(sa.select(sa.func.count(Submission.id)).join(Team).where(Team.name == "delta")) == 0
    submit_button(app, "Confirm and send").click().run()
    assert not app.exception and not app.error
    with session_scope(url) as session:
        row = session.scalar(sa.select(Submission).join(Team).where(Team.name == "delta"))
    assert row is not None and row.label == "resnet-ish"
    assert app.success[0].value.startswith(f"Scored submission #{row.id} of team delta to syn: top-5 error "
                                           f"{100 * row.primary_score:.2f}% (95% CI ")
    assert {m.label: m.value for m in app.metric}["submissions left"] == "1"
    assert "1 of 2 submissions left in the rolling 7-day window." in app.info[0].value
    assert {m.label: m.value for m in app.metric}["rank on the board"] == f"{rank_of(url, row.id)} of 6"  # 5 entries before
    history = app.dataframe[0].value
    assert list(history["submission_id"]) == [row.id] and list(history["label"]) == ["resnet-ish"]
    assert history["score"][0] == pytest.approx(row.primary_score)
    # The form is cleared: no file to send twice, no entry name left over; the confirmation is gone.
    assert app.file_uploader[0].value is None and app.text_input(key="label").value == ""
    assert not [b for b in app.button if b.label == "Confirm and send"]
    submit_button(app, "Submit").click().run()
    assert [e.value for e in app.error] == ["Choose a prediction file to upload."]


def test_submit_history_after_sign_in_and_quota_exhausted(fresh_url) -> None:
    url, tokens = fresh_url
    app = open_page("submit")
    fill_form(app, tokens["alpha"])
    submit_button(app, "Show my submissions").click().run()
    assert not app.error
    history = app.dataframe[0].value
    # Newest first, from both challenges; the two uploads at T0 by id, later first.
    assert list(history["label"]) == ["deeper net", "my detector", "first try"]
    labels = held_labels(url)
    for seed in (1, 2):
        fill_form(app, tokens["alpha"], predictions(labels, 0.5, 0.8, seed=seed))
        send(app)
    assert not app.error
    assert "The next slot frees at" in app.info[0].value
    fill_form(app, tokens["alpha"], predictions(labels, 0.5, 0.8, seed=3))
    submit_button(app, "Submit").click().run()
    assert "You have no submission left (all 2 used)" in app.warning[0].value  # said before it is sent
    submit_button(app, "Confirm and send").click().run()
    assert app.error[0].value.startswith("quota reached: 2 of 2 submissions to 'syn' in the last 7 days")


# --- Run detail, Campaign -------------------------------------------------------------------------

def test_run_detail_shows_provenance_from_the_query_param(url: str) -> None:
    app = open_page("run", job="job-vgg11")
    assert app.selectbox[0].value == "job-vgg11" and app.header[0].value == "vgg11 on synthetic"
    fields = dict(zip(app.table[0].value["field"], app.table[0].value["value"]))
    assert fields["git commit"] == "0f1e2d3c4b5a69788796a5b4c3d2e1f0a1b2c3d4"
    assert fields["seed"] == "0" and fields["hardware"] == "Test CPU, 2 threads" and fields["node"] == "node-vgg11"
    assert fields["checkpoint"].endswith("runs/vgg11/checkpoint_3.pt") and fields["log"].endswith("vgg11/log.txt")
    assert json.loads(app.json[0].value)["torch"] == "2.14.1"
    assert json.loads(app.json[1].value)["recipe"]["lr"] == 0.1  # the job spec
    assert "finished vgg11 cleanly" in app.code[0].value
    result = dict(zip(app.table[1].value["field"], app.table[1].value["value"]))
    assert result["top-5 err"] == "18.00%" and result["parameters"] == "128.81 M" and result["training time"] == "42 s"
    assert "mAP@0.5" not in result  # a classification run has none: no empty row
    assert fields["attempts"] == "1" and fields["created"] == "2025-02-27 09:00 UTC"
    assert list(app.dataframe[0].value["challenge"]) == ["syn"]  # the way back to the board
    history = app.dataframe[1].value
    assert list(history["epoch"]) == ["1", "2", "3"] and "validation top-5 err" in history  # named, not `val_top5_err`
    assert list(history["validation top-5 err"]) == ["18.00%"] * 3 and history["learning rate"][0] == "0.10"
    assert len(app.get("vega_lite_chart")) == 3  # one chart per series: each on an axis of its own
    assert app.query_params["job"] == "job-vgg11"


def test_run_detail_unknown_job_and_missing_log(url: str) -> None:
    app = open_page("run", job="job-nope")
    assert "No run with job id 'job-nope'" in app.warning[0].value
    app.selectbox[0].set_value("job-rcnn-old").run()
    assert not app.exception and any("No log recorded" in c.value for c in app.caption)


def chart_rows(chart) -> pd.DataFrame:
    """The rows a chart element draws: Streamlit sends a chart's data beside its spec, as Arrow."""
    import pyarrow as pa

    (dataset,) = chart.proto.datasets
    return pa.ipc.open_stream(dataset.data.data).read_all().to_pandas()


def frame_with(app: AppTest, column: str) -> pd.DataFrame:
    """The page's one table that has `column`."""
    found = [d.value for d in app.dataframe if column in d.value.columns]
    assert len(found) == 1, [list(d.value.columns) for d in app.dataframe]
    return found[0]


def test_run_detail_shows_where_the_errors_are(url: str) -> None:
    app = open_page("run", job=ANALYSED)
    assert any(h.value == "Where the errors are" for h in app.subheader)
    stored = run_record(url, ANALYSED)["metrics"]
    # The heatmap: a rect chart of the stored matrix, row-normalised, every image counted once.
    charts = app.get("vega_lite_chart")
    heatmaps = [c for c in charts if json.loads(c.proto.spec)["mark"]["type"] == "rect"]
    assert len(heatmaps) == 1 and len(charts) == 1 + 3  # beside the three learning curves
    cells = chart_rows(heatmaps[0]).set_index(["true", "predicted"])
    matrix = np.asarray(stored["confusion"])
    assert len(cells) == matrix.size and cells["images"].sum() == matrix.sum() == 500
    assert tuple(cells.loc[("shape 3", "shape 5")]) == (17, pytest.approx(17 / 50))
    assert tuple(cells.loc[("shape 3", "shape 3")]) == (matrix[3, 3], pytest.approx(matrix[3, 3] / 50))
    # Per class: the stored errors, in the site's percent, worst top-1 first.
    per_class = frame_with(app, "top-5 err")
    names, errors = stored["class_names"], stored["per_class"]
    expected = {names[i]: (f"{100 * errors['top1_err'][i]:.2f}%", f"{100 * errors['top5_err'][i]:.2f}%")
                for i in range(10)}
    assert {c: (t1, t5) for c, t1, t5 in zip(per_class["class"], per_class["top-1 err"], per_class["top-5 err"])} \
        == expected
    assert list(per_class["images"]) == ["50"] * 10
    shown = [percent_value(e) for e in per_class["top-1 err"]]
    assert shown == sorted(shown, reverse=True) and per_class["class"][0] == "shape 3"  # 3 -> 5 and 3 -> 8
    # Most confused: the matrix's largest off-diagonal cell on top, named.
    confused = frame_with(app, "predicted as")
    off = matrix - np.diag(np.diag(matrix))
    true, predicted = np.unravel_index(off.argmax(), off.shape)
    assert (confused["true class"][0], confused["predicted as"][0]) == (names[true], names[predicted])
    assert (confused["images"][0], confused["share of the class"][0]) == ("17", "34.00%")
    assert len(confused) == len(stored["most_confused"]) == 10
    # Time to accuracy: the thresholds reached, with their training seconds; the others blank.
    times = frame_with(app, "training time")
    assert list(times["top-1 err at most"]) == ["50.00%", "25.00%", "10.00%", "5.00%"]
    assert list(times["epoch"]) == ["1", "3", "not reached", "not reached"]
    assert list(times["training time"]) == ["14 s", "42 s", "", ""]
    assert list(times["time since the start"]) == ["15 s", "46 s", "", ""]
    # The Metrics JSON leaves out what the section shows (at 1000 classes, tens of thousands of numbers).
    shown_metrics = json.loads(app.json[2].value)
    assert shown_metrics["top1_err"] == 0.22 and shown_metrics["confusion_split"] == "val"
    assert not {"confusion", "per_class", "most_confused", "class_names", "time_to"} & set(shown_metrics)


def test_run_detail_of_a_run_from_before_shows_nothing_extra(url: str) -> None:
    for job in ("job-vgg11", "job-rcnn-old", "job-failed"):
        app = open_page("run", job=job)
        assert not app.exception
        assert not [h for h in app.subheader if h.value in ("Where the errors are",
                                                            "Proposal recall against proposal count")]
        assert not [d for d in app.dataframe if "predicted as" in d.value.columns]
    # A detection run with recall by proposal count draws it, one line per method.
    app = open_page("run", job="job-rcnn")
    assert any(h.value == "Proposal recall against proposal count" for h in app.subheader)
    (chart,) = [c for c in app.get("vega_lite_chart") if "proposals per image" in c.proto.spec]
    rows = chart_rows(chart)
    assert sorted(zip(rows["method"], rows["proposals"], rows["recall"])) == [
        ("selective_search", 10, 0.31), ("selective_search", 100, 0.74), ("selective_search", 1000, 0.9),
        ("sliding_window", 10, 0.04), ("sliding_window", 100, 0.27)]


def test_campaign_counts_states_and_shows_failures(url: str) -> None:
    app = open_page("campaign")
    assert {m.label: m.value for m in app.metric} == {"queued": "1", "running": "1", "done": "5", "failed": "1"}
    per_suite = app.dataframe[0].value.set_index("suite")
    assert per_suite.loc["cpu", "total"] == 3 and per_suite.loc["smoke", "done"] == 3
    assert app.toggle[0].label == "Auto-refresh" and app.toggle[0].value is False
    assert "below inception_v3's minimum size 75" in app.code[0].value
    app.multiselect[1].set_value(["failed"]).run()
    assert list(app.dataframe[1].value["job"]) == ["run?job=job-failed"]  # a link to its Run detail
    assert len(app.get("vega_lite_chart")) == 2  # jobs by state over time, throughput
    app.toggle[0].set_value(True).run()
    assert not app.exception


# --- invariant 1 ----------------------------------------------------------------------------------

def leaks(text: str, labels: dict[str, int]) -> list[str]:
    """Held labels as `image_id,label` pairs (any separator) or as runs of consecutive labels."""
    found = [f"{i}->{v}" for i, v in labels.items()
             if re.search(rf"{i}\W{{1,4}}{v}(?!\d)", text)]
    sequence = list(labels.values())
    for start in range(0, len(sequence) - 8, 4):
        window = sequence[start:start + 8]
        for sep in (",", ", ", " ", ";", "\t", "\n", "\\n"):
            if sep.join(map(str, window)) in text:
                found.append(f"sequence at {start} joined by {sep!r}")
    return found


def test_no_page_or_export_shows_a_held_label(fresh_url) -> None:
    url, tokens = fresh_url
    labels = held_labels(url)
    assert len(labels) == 200
    seen = []
    app = open_page()
    seen.append(texts(app))
    for slug, task in (("syn", "classification"), ("scenes", "detection")):
        board = leaderboard(url, slug, best_only=False)
        seen += [board_csv(board, task), board_json(board, {"slug": slug, "task": task})]
    for page in ("architectures", "detection", "campaign"):
        seen.append(texts(open_page(page)))
    for job in ("job-resnet18", "job-rcnn", "job-failed"):
        seen.append(texts(open_page("run", job=job)))
    app = open_page("submit")
    fill_form(app, tokens["delta"], predictions(labels, 0.9, 1.0, seed=5))
    send(app)
    assert app.success
    seen.append(texts(app))
    wrong = (labels["test_000000"] + 1) % OPTIONS["num_classes"]  # the uploader's own guess, quoted back, is no leak
    fill_form(app, tokens["delta"], f"image_id,pred_1\ntest_000000,{wrong}\ntest_000000,{wrong}\n".encode())
    send(app)
    assert "test_000000" in app.error[0].value
    seen.append(texts(app))
    text = "\n".join(seen)
    # The collector saw alerts, code, tables and exports: the leak check below is not vacuous.
    for shown in ("Scored submission", "finished resnet18 cleanly", "node-rcnn", "significantly behind", "top5_err"):
        assert shown in text
    assert leaks(text, labels) == []
    # The check does catch a leak: a page that printed the labels would fail it.
    planted = text + "\n" + ",".join(map(str, list(labels.values())[:12]))
    assert leaks(planted, labels) != []
