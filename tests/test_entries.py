"""Issue #14, point 4: an entry's name, description and code URL reach the board and its exports, and a
file a team already submitted to a challenge (same SHA-256) returns the earlier result and costs nothing."""
from __future__ import annotations

import csv
import io
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from gate_server import serving
from streamlit.testing.v1 import AppTest

from db.engine import create_schema, session_scope
from db.schema import Challenge, Run, Submission, Team, Throttle
from leaderboard import quota
from leaderboard.__main__ import main
from leaderboard.challenges import create_challenge
from leaderboard.errors import QuotaExceeded, ValidationError
from leaderboard.gate_client import GATE_URL_ENV
from leaderboard.queries import leaderboard, team_submissions
from leaderboard.quota import MAX_DESCRIPTION, entry_fields, quota_status, submit
from leaderboard.site_data import board_csv, board_json
from leaderboard.tokens import create_team
from workers.datasets import held_test_labels

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"num_classes": 10, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 5}
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
CODE = "https://github.com/alpha/deeper-net"
CHALLENGE = {"slug": "syn", "title": "Synthetic", "task": "classification", "dataset": "synthetic",
             "metric": "top5_err"}


def predictions(seed: int, right: float = 0.5) -> bytes:
    """A valid top-5 file; each seed another file (other bytes, another SHA-256)."""
    rng = np.random.default_rng(seed)
    lines = ["image_id,pred_1,pred_2,pred_3,pred_4,pred_5"]
    for image_id, label in held_test_labels("synthetic", OPTIONS).items():
        others = [c for c in rng.permutation(10).tolist() if c != label]
        lines.append(f"{image_id}," + ",".join(map(str, [label, *others[:4]] if rng.random() < right else others[:5])))
    return ("\n".join(lines) + "\n").encode()


def setup(url: str, quota_n: int = 2) -> str:
    create_challenge(url, "syn", "synthetic", OPTIONS, title="Synthetic", quota=quota_n, public_fraction=1.0)
    with session_scope(url) as session:
        return create_team(session, "alpha")


def rows(url: str) -> list[Submission]:
    with session_scope(url) as session:
        found = list(session.scalars(sa.select(Submission).order_by(Submission.id)))
        session.expunge_all()
    return found


def board_page(url: str, monkeypatch, every: bool = False) -> pd.DataFrame:
    """The table the Leaderboard page shows (its default page), each team's best or every submission."""
    monkeypatch.setenv("CONVBENCH_DB", url)
    app = AppTest.from_file(str(ROOT / "leaderboard" / "app.py"), default_timeout=60).run()
    assert not app.exception, app.exception
    if every:
        app.toggle[0].set_value(True).run()
        assert not app.exception, app.exception
    return app.dataframe[0].value


def used(url: str, now: datetime | None = None) -> int:
    with session_scope(url) as session:
        team = session.scalar(sa.select(Team).where(Team.name == "alpha"))
        return quota_status(session, team, session.scalar(sa.select(Challenge)), now).used


# --- the entry's name, description and code URL ------------------------------------------------------

def test_name_description_and_code_url_reach_the_board_and_both_exports(db_url: str, monkeypatch) -> None:
    token = setup(db_url)
    submit(db_url, token, "syn", predictions(1, right=0.9), "p.csv", label="deeper net",
           description="ResNet-ish, 40 layers;\nno extra data", code_url=CODE)
    with session_scope(db_url) as session:
        beta = create_team(session, "beta")
    submit(db_url, beta, "syn", predictions(2, right=0.1), "p.csv")  # gave no name: shown by its team's
    stored = rows(db_url)[0]
    assert (stored.label, stored.description, stored.code_url) == (
        "deeper net", "ResNet-ish, 40 layers;\nno extra data", CODE)

    board = leaderboard(db_url, "syn")
    assert list(board["entry"]) == ["deeper net", "beta"] and list(board["team"]) == ["alpha", "beta"]
    assert board["description"][0] == "ResNet-ish, 40 layers;\nno extra data" and board["code_url"][0] == CODE
    assert board["description"].isna()[1] and board["code_url"].isna()[1]

    shown = board_page(db_url, monkeypatch)
    assert list(shown["entry"]) == ["deeper net", "beta"] and shown["code"][0] == CODE and shown["code"].isna()[1]
    assert shown["description"][0] == "ResNet-ish, 40 layers;\nno extra data"

    exported = list(csv.DictReader(io.StringIO(board_csv(board, "classification"))))
    assert [r["model"] for r in exported] == ["deeper net", "beta"]
    assert [r["description"] for r in exported] == ["ResNet-ish, 40 layers;\nno extra data", ""]
    assert [r["code_url"] for r in exported] == [CODE, ""]

    entries = json.loads(board_json(board, CHALLENGE))["entries"]
    assert [(e["entry"], e["label"], e["description"], e["code_url"]) for e in entries] == [
        ("deeper net", "deeper net", "ResNet-ish, 40 layers;\nno extra data", CODE), ("beta", "", None, None)]

    history = team_submissions(db_url, "alpha")
    assert list(history["description"]) == ["ResNet-ish, 40 layers;\nno extra data"]
    assert list(history["code_url"]) == [CODE]


def test_two_entries_of_one_team_are_two_distinguishable_rows(db_url: str, monkeypatch) -> None:
    token = setup(db_url)
    submit(db_url, token, "syn", predictions(1), "p.csv", label="first try", now=T0)
    submit(db_url, token, "syn", predictions(2), "p.csv", label="second try", code_url=CODE, now=T0)
    every = leaderboard(db_url, "syn", best_only=False)
    assert list(every["team"]) == ["alpha", "alpha"] and sorted(every["entry"]) == ["first try", "second try"]
    shown = board_page(db_url, monkeypatch, every=True)
    assert len(shown) == 2 and not shown[["entry", "team", "description", "code"]].astype(str).duplicated().any()
    for text in (board_csv(every, "classification"), board_json(every, CHALLENGE)):
        assert "first try" in text and "second try" in text
    detection = list(csv.DictReader(io.StringIO(board_csv(every.assign(map50=0.5, map50_lo=None, map50_hi=None,
                                                                       map_coco=0.3), "detection"))))
    assert sorted(r["model"] for r in detection) == ["first try", "second try"]
    assert sorted(r["code_url"] for r in detection) == ["", CODE]


def test_an_entrys_text_is_spreadsheet_safe_in_the_csv_export(sqlite_url: str, monkeypatch) -> None:
    url = create_schema(sqlite_url)
    token = setup(url)
    submit(url, token, "syn", predictions(1), "p.csv", label="@SUM(1)", description="=HYPERLINK(\"x\")")
    board = leaderboard(url, "syn")
    row = next(csv.DictReader(io.StringIO(board_csv(board, "classification"))))
    assert row["model"] == "'@SUM(1)" and row["description"] == "'=HYPERLINK(\"x\")"
    assert board_page(url, monkeypatch)["description"][0] == "'=HYPERLINK(\"x\")"  # the table's own CSV download
    assert json.loads(board_json(board, CHALLENGE))["entries"][0]["description"] == "=HYPERLINK(\"x\")"


@pytest.mark.parametrize("url", ["javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,<b>x</b>",
                                 "ftp://example.org/code", "https://", "//example.org/x", "github.com/alpha/x",
                                 "https://github.com@evil.example/x", "https://example.org/a b",
                                 "https://example.org/\x00", "https://[::1/x", "https://example.org/" + "a" * 500])
def test_a_bad_code_url_is_refused_clearly_and_costs_nothing(sqlite_url: str, url: str) -> None:
    db = create_schema(sqlite_url)
    token = setup(db, quota_n=1)
    with pytest.raises(ValidationError, match=r"^code URL: ") as info:
        submit(db, token, "syn", predictions(1), "p.csv", label="x", code_url=url)
    assert "\x00" not in str(info.value)
    assert rows(db) == [] and used(db) == 0
    with session_scope(db) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Throttle)) == 0  # no rejected-file charge
    assert submit(db, token, "syn", predictions(1), "p.csv", code_url="http://example.org/x").quota_left == 0


def test_the_javascript_url_error_says_what_is_accepted(db_url: str) -> None:
    token = setup(db_url)
    with pytest.raises(ValidationError) as info:
        submit(db_url, token, "syn", predictions(1), "p.csv", code_url="javascript:alert(1)")
    assert str(info.value) == ("code URL: only http:// and https:// addresses are accepted, "
                               "e.g. https://github.com/team/model")
    assert rows(db_url) == [] and used(db_url) == 0


def test_entry_fields_are_stripped_capped_and_checked() -> None:
    entry = entry_fields("  name  ", "  words \n", "  https://example.org/x?y=1#z  ")
    assert (entry.name, entry.description, entry.code_url) == ("name", "words", "https://example.org/x?y=1#z")
    assert entry_fields() == entry_fields("", None, None) and entry_fields().description is None
    assert len(entry_fields("n" * 300).name) == 128  # cut to the column, as before
    assert entry_fields(description="d" * MAX_DESCRIPTION).description == "d" * MAX_DESCRIPTION
    with pytest.raises(ValidationError, match=r"^description: 2001 characters, at most 2000$"):
        entry_fields(description="d" * (MAX_DESCRIPTION + 1))
    with pytest.raises(ValidationError, match="^description: no control characters"):
        entry_fields(description="a\x00b")  # PostgreSQL keeps no NUL in text: refused before any work
    with pytest.raises(ValidationError, match="^entry name: no control characters"):
        entry_fields("a\x00b")


def test_a_stored_non_http_code_url_is_never_a_link(sqlite_url: str, monkeypatch) -> None:
    """Defence in depth: a row written around submit() cannot put a javascript: link on the board."""
    url = create_schema(sqlite_url)
    token = setup(url)
    submit(url, token, "syn", predictions(1), "p.csv", code_url=CODE)
    with session_scope(url) as session:
        session.execute(sa.update(Submission).values(code_url="javascript:alert(1)"))
    assert board_page(url, monkeypatch)["code"].isna().all()


# --- the same file twice ----------------------------------------------------------------------------

def test_the_same_file_twice_returns_the_first_result_and_costs_nothing(db_url: str, monkeypatch) -> None:
    token = setup(db_url, quota_n=2)
    data = predictions(1)
    first = submit(db_url, token, "syn", data, "p.csv", label="first", now=T0)
    assert not first.existing and first.quota_left == 1

    def no_validation(*args, **kwargs):
        raise AssertionError("a file sent again is not validated again")

    monkeypatch.setattr(quota, "check_upload", no_validation)
    again = submit(db_url, token, "syn", data, "other-name.csv", label="renamed", description="d", now=T0)
    monkeypatch.undo()
    assert again.existing and again.submission_id == first.submission_id
    assert (again.primary_score, again.scores, again.quota_left) == (first.primary_score, first.scores, 1)
    assert len(rows(db_url)) == 1 and rows(db_url)[0].label == "first" and used(db_url, T0) == 1

    second = submit(db_url, token, "syn", predictions(2), "p.csv", now=T0)  # another file is charged
    assert not second.existing and second.quota_left == 0
    # With the quota spent, the first file again still answers with its result, not QuotaExceeded ...
    assert submit(db_url, token, "syn", data, "p.csv", now=T0).submission_id == first.submission_id
    with pytest.raises(QuotaExceeded):  # ... while a new file is refused
        submit(db_url, token, "syn", predictions(3), "p.csv", now=T0)
    assert len(rows(db_url)) == 2 and used(db_url, T0) == 2


def test_the_same_file_is_charged_per_team_and_per_challenge(db_url: str) -> None:
    token = setup(db_url)
    create_challenge(db_url, "syn-b", "synthetic", OPTIONS, quota=2, public_fraction=1.0)
    with session_scope(db_url) as session:
        beta = create_team(session, "beta")
    data = predictions(1)
    results = [submit(db_url, t, slug, data, "p.csv") for t, slug in ((token, "syn"), (beta, "syn"), (token, "syn-b"))]
    assert [r.existing for r in results] == [False] * 3 and len({r.submission_id for r in results}) == 3


def test_an_official_team_submits_one_file_per_run(db_url: str) -> None:
    """Two baseline runs may predict alike; each is an entry of its own (their identity is the run)."""
    setup(db_url)
    with session_scope(db_url) as session:
        create_team(session, "baselines", official=True)
        session.add_all([Run(job_id=f"job-{i}", suite="smoke", arch="vgg11", dataset="synthetic") for i in (1, 2)])
    with session_scope(db_url) as session:
        team = session.scalar(sa.select(Team).where(Team.name == "baselines"))
    data = predictions(1)
    first, second = (submit(db_url, team, "syn", data, "p.csv", run_id=f"job-{i}") for i in (1, 2))
    assert not first.existing and not second.existing and first.submission_id != second.submission_id


@pytest.mark.parametrize("stale_precheck", [False, True], ids=["plain", "all-past-the-precheck"])
def test_ten_concurrent_identical_uploads_make_one_row_and_use_one_slot(db_url: str, monkeypatch,
                                                                        stale_precheck: bool) -> None:
    token = setup(db_url, quota_n=5)
    uploads, data = 10, predictions(1)
    if stale_precheck:
        # Every upload past the unlocked early check before any takes the lock: only the locked check can stop them.
        gate, lock_team = threading.Barrier(uploads), quota._lock_team
        monkeypatch.setattr(quota, "_lock_team", lambda session, team_id: (gate.wait(60), lock_team(session, team_id))[1])
    start, results, other = threading.Barrier(uploads), [], []

    def upload(i: int) -> None:
        start.wait(60)
        try:
            results.append(submit(db_url, token, "syn", data, f"p{i}.csv", label=f"try{i}"))
        except BaseException as exc:  # noqa: BLE001 - any other outcome fails the test below
            other.append(exc)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(uploads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert other == [] and len(results) == uploads
    assert len({r.submission_id for r in results}) == 1 and sum(not r.existing for r in results) == 1
    assert len(rows(db_url)) == 1 and used(db_url) == 1
    assert all(r.quota_left == 4 for r in results)


# --- the command line and the Submit page -------------------------------------------------------------

def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_cli_takes_the_entry_fields_and_says_when_a_file_was_submitted(sqlite_url: str, tmp_path: Path,
                                                                           capsys) -> None:
    db = create_schema(sqlite_url)
    token = setup(db)
    file, other = tmp_path / "p.csv", tmp_path / "q.csv"
    file.write_bytes(predictions(1))
    other.write_bytes(predictions(2))
    token_file = tmp_path / "token"
    token_file.write_text(token)
    submit_ = ("admin", "submit", "--db", db, "--token-file", str(token_file), "--challenge", "syn")
    code, out, _ = run_cli(capsys, *submit_, str(file), "--name", "deeper net", "--description", "forty layers",
                           "--code-url", CODE)
    assert code == 0 and "submission 1 recorded; submissions left in this window: 1" in out
    code, out, _ = run_cli(capsys, *submit_, str(file), "--name", "again")
    assert code == 0 and out.startswith("already submitted as #1; not charged\n") and "top5_err" in out
    assert "submissions left in this window: 1" in out and "recorded" not in out
    code, out, _ = run_cli(capsys, *submit_, str(other), "--label", "old flag")  # --label: the old name of --name
    assert code == 0 and "submission 2 recorded" in out
    code, _, err = run_cli(capsys, *submit_, str(other), "--code-url", "javascript:alert(1)")
    assert code == 1 and err.startswith("error: code URL: only http:// and https:// addresses are accepted")
    assert [(r.label, r.description, r.code_url) for r in rows(db)] == [
        ("deeper net", "forty layers", CODE), ("old flag", None, None)]


@pytest.fixture
def gate_url(sqlite_url: str, monkeypatch) -> str:
    """The database, and the submission gate serving it, which the Submit page posts to."""
    url = create_schema(sqlite_url)
    with serving(url) as gate:
        monkeypatch.setenv(GATE_URL_ENV, gate)
        yield url


def test_the_submit_page_takes_the_entry_fields(gate_url: str, monkeypatch) -> None:
    url = gate_url
    token = setup(url)
    monkeypatch.setenv("CONVBENCH_DB", url)
    app = AppTest.from_file(str(ROOT / "leaderboard" / "app.py"), default_timeout=60).run()
    app.switch_page("views/submit.py").run()
    assert not app.exception, app.exception

    def send(data: bytes, name: str = "", description: str = "", code_url: str = "") -> None:
        app.text_input(key="token").input(token)
        app.file_uploader[0].set_value(("preds.csv", data, "text/csv"))
        app.text_input(key="label").input(name)
        app.text_area(key="description").input(description)
        app.text_input(key="code_url").input(code_url)
        next(b for b in app.button if b.label == "Submit").click().run()
        assert not app.exception, app.exception
        confirm = [b for b in app.button if b.label == "Confirm and send"]
        if confirm:  # a form the page refused (a bad field) asks for no confirmation
            confirm[0].click().run()
            assert not app.exception, app.exception

    send(predictions(1), "web entry", "from the form", CODE)
    assert not app.error and app.success[0].value.startswith("Scored submission #1")
    assert [(r.label, r.description, r.code_url) for r in rows(url)] == [("web entry", "from the form", CODE)]
    history = app.dataframe[0].value
    assert list(history["description"]) == ["from the form"] and list(history["code_url"]) == [CODE]
    send(predictions(1), "again")
    assert not app.error and app.info[0].value.startswith("This file was already submitted as #1; not charged")
    assert len(rows(url)) == 1
    send(predictions(2), code_url="javascript:alert(1)")
    assert [e.value for e in app.error] == [
        "code URL: only http:// and https:// addresses are accepted, e.g. https://github.com/team/model"]
    assert len(rows(url)) == 1 and used(url) == 1
