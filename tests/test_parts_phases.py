"""Issue #15, points 1-3 on both databases: the public/private split, phases with quota rules raced by twenty
uploads, final selection, and the close that publishes the private ranking."""
from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from db.engine import create_schema, session_scope
from db.schema import Challenge, FinalSelection, HeldLabel, PrivateScore, Submission
from leaderboard import final, gate_client, parts, phases, standings
from leaderboard.challenges import close_challenge, create_challenge, get_challenge
from leaderboard.errors import ChallengeError, LeaderboardError, QuotaExceeded, ValidationError
from leaderboard.quota import submit
from leaderboard.tokens import create_team

OPTIONS = {"num_classes": 4, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 10}
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def labels_and_parts(url: str, slug: str) -> tuple[dict[str, int], set[str]]:
    """The held labels and the private ids, read as the owner (a test may; no page can)."""
    with session_scope(url) as session:
        cid = get_challenge(session, slug).id
        rows = session.execute(sa.select(HeldLabel.image_id, HeldLabel.label, HeldLabel.part)
                               .where(HeldLabel.challenge_id == cid)).all()
    return {i: int(v) for i, v, _ in rows}, {i for i, _, p in rows if p == "private"}


def predictions(labels: dict[str, int], right: set[str], k: int = 1) -> bytes:
    """A file whose first guess is right exactly on the images in `right` (k guesses, the others wrong)."""
    lines = ["image_id," + ",".join(f"pred_{j}" for j in range(1, k + 1))]
    for image_id, label in sorted(labels.items()):
        wrong = [c for c in range(OPTIONS["num_classes"]) if c != label]
        guesses = ([label] + wrong)[:k] if image_id in right else wrong[:k]
        lines.append(f"{image_id}," + ",".join(map(str, guesses)))
    return ("\n".join(lines) + "\n").encode()


def make(url: str, slug: str = "pp", fraction: float = 0.5, **rule) -> tuple[dict[str, int], set[str]]:
    create_challenge(url, slug, "synthetic", OPTIONS, public_fraction=fraction, **rule)
    return labels_and_parts(url, slug)


def team(url: str, name: str) -> str:
    with session_scope(url) as session:
        return create_team(session, name)


# --- point 1: the parts --------------------------------------------------------------------------------------

def test_split_is_stratified_exact_and_varies_with_the_secret_seed() -> None:
    labels = {f"i{n:03d}": n % 4 for n in range(40)}
    private = parts.split(labels, "classification", 0.5, seed=1)
    assert len(private) == 20
    assert all(sum(1 for i in private if labels[i] == c) == 5 for c in range(4))  # 10 per class, half private
    assert parts.split(labels, "classification", 0.5, seed=1) == private  # the seed decides
    assert parts.split(labels, "classification", 0.5, seed=2) != private
    assert parts.split(labels, "classification", 1.0) == set()
    boxes = {f"d{n}": [[0, 0, 1, 1, n % 2, 0]] for n in range(10)}
    hidden = parts.split(boxes, "detection", 0.6, seed=0)
    assert len(hidden) == 4 and {boxes[i][0][4] for i in hidden} == {0, 1}  # by the first box's class
    for bad in (0, 1.5, "x"):
        with pytest.raises(ChallengeError, match="public fraction"):
            parts.check_fraction(bad)


def test_every_upload_is_scored_on_both_parts_and_the_private_one_waits_for_the_close(db_url: str) -> None:
    labels, private = make(db_url)
    assert len(private) == 20 and len(labels) == 40
    public = set(labels) - private
    token = team(db_url, "alpha")
    # Right on every public image, wrong on 3 of 4 private ones: the two scores could not be confused.
    right = public | set(sorted(private)[:5])
    result = submit(db_url, token, "pp", predictions(labels, right), "p.csv", now=T0)
    assert result.primary_score == 0.0 and result.scores["n_images"] == 20  # the public part only
    assert "0.75" not in json.dumps(result.scores)
    with session_scope(db_url) as session:
        row = session.get(Submission, result.submission_id)
        assert row.private_score is None and row.private_scores is None  # what the site could read: nothing yet
        hidden = session.get(PrivateScore, result.submission_id)
        assert hidden.primary_score == pytest.approx(0.75) and hidden.scores["n_images"] == 20
        before = standings.compute(session, get_challenge(session, "pp"), replicates=50)
    assert before["part"] == "public" and before["public"] is None
    assert "0.75" not in json.dumps(before) and "0.25" not in json.dumps(before)
    close_challenge(db_url, "pp")
    with session_scope(db_url) as session:
        row = session.get(Submission, result.submission_id)
        assert row.private_score == pytest.approx(0.75) and row.private_scores["n_images"] == 20


def test_an_old_challenge_without_parts_scores_every_image_as_public(db_url: str) -> None:
    labels, private = make(db_url, "old", fraction=1.0)
    assert private == set()
    token = team(db_url, "alpha")
    result = submit(db_url, token, "old", predictions(labels, set(list(labels)[:10])), "p.csv", now=T0)
    assert result.scores["n_images"] == 40 and result.primary_score == pytest.approx(0.75)
    with session_scope(db_url) as session:
        assert session.get(PrivateScore, result.submission_id) is None
        session.execute(sa.update(HeldLabel).values(part=None))  # rows from before the split
        assert session.get(Challenge, get_challenge(session, "old").id).public_fraction == 1.0


# --- point 2: phases ---------------------------------------------------------------------------------------

def add(url: str, slug: str, name: str, start: datetime, end: datetime | None, **rule) -> None:
    with session_scope(url) as session:
        phases.add_phase(session, get_challenge(session, slug), name, start, end, **rule)


def test_outside_every_phase_an_upload_is_refused_with_the_times(db_url: str) -> None:
    labels, _ = make(db_url)
    add(db_url, "pp", "development", T0, T0 + timedelta(days=7), quota=5)
    add(db_url, "pp", "final", T0 + timedelta(days=8), T0 + timedelta(days=10), quota=2)
    token = team(db_url, "alpha")
    data = predictions(labels, set())
    with pytest.raises(QuotaExceeded, match="no open phase at 2029-12-31 12:00:00 UTC.*'development' from "
                                            "2030-01-01 12:00:00 to 2030-01-08 12:00:00 UTC") as early:
        submit(db_url, token, "pp", data, "p.csv", now=T0 - timedelta(days=1))
    assert early.value.next_slot_at == T0
    with pytest.raises(QuotaExceeded, match="'final' from 2030-01-09 12:00:00 to 2030-01-11 12:00:00") as gap:
        submit(db_url, token, "pp", data, "p.csv", now=T0 + timedelta(days=7, hours=1))
    assert gap.value.next_slot_at == T0 + timedelta(days=8)
    with pytest.raises(QuotaExceeded, match="no open phase at 2030-01-12") as late:
        submit(db_url, token, "pp", data, "p.csv", now=T0 + timedelta(days=11))
    assert late.value.next_slot_at is None
    assert submit(db_url, token, "pp", data, "p.csv", now=T0 + timedelta(days=9)).quota_left == 1
    with pytest.raises(ChallengeError, match="overlaps phase 'final'"):
        add(db_url, "pp", "extra", T0 + timedelta(days=9), None, quota=1)
    with pytest.raises(ChallengeError, match="not after its start"):
        add(db_url, "pp", "bad", T0 + timedelta(days=20), T0 + timedelta(days=19), quota=1)


RULES = {  # a phase's rule -> how many of twenty uploads at once it lets in
    "window": ({"quota": 3}, 3),
    "per-day": ({"quota": 100, "per_day": 4}, 4),
    "total": ({"quota": 100, "total": 5}, 5),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_twenty_concurrent_uploads_get_exactly_what_each_rule_allows(db_url: str, rule: str) -> None:
    labels, _ = make(db_url)
    options, allowed = RULES[rule]
    add(db_url, "pp", "main", T0 - timedelta(days=1), T0 + timedelta(days=30), **options)
    token = team(db_url, "alpha")
    ids = sorted(labels)
    files = [predictions(labels, set(ids[:i + 1])) for i in range(20)]  # twenty different files
    with pytest.raises(ValidationError):  # a rejected file costs nothing
        submit(db_url, token, "pp", b"image_id,pred_1\nnope,1\n", "bad.csv", now=T0)
    start = threading.Barrier(20)
    accepted, refused, other = [], [], []

    def upload(i: int) -> None:
        start.wait(60)
        try:
            accepted.append(submit(db_url, token, "pp", files[i], f"p{i}.csv", now=T0))
        except QuotaExceeded as exc:
            refused.append(exc)
        except BaseException as exc:  # noqa: BLE001 - any other outcome fails the test
            other.append(exc)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert other == [] and len(accepted) == allowed and len(refused) == 20 - allowed
    words = {"window": "in the last 7 days", "per-day": "today (UTC)", "total": "in phase 'main'"}[rule]
    assert all(words in str(e) for e in refused)
    if rule == "per-day":  # frees at the next UTC midnight
        assert {e.next_slot_at for e in refused} == {datetime(2030, 1, 2, tzinfo=UTC)}
    with session_scope(db_url) as session:
        assert session.scalar(sa.select(sa.func.count(Submission.id))) == allowed


# --- point 3: final selection and the close ------------------------------------------------------------------

def test_final_selection_before_the_deadline_and_the_private_board_at_the_close(db_url: str) -> None:
    labels, private = make(db_url, quota=10)
    add(db_url, "pp", "main", T0 - timedelta(days=1), T0 + timedelta(days=2), quota=10)
    public = sorted(set(labels) - private)
    hidden = sorted(private)
    alpha, beta, gamma = team(db_url, "alpha"), team(db_url, "beta"), team(db_url, "gamma")
    # alpha: best in public, worst in private (it overfit); beta the other way; gamma in between and marks nothing.
    a1 = submit(db_url, alpha, "pp", predictions(labels, set(public) | set(hidden[:2])), "a1.csv", now=T0)
    a2 = submit(db_url, alpha, "pp", predictions(labels, set(public[:18]) | set(hidden[:3])), "a2.csv", now=T0)
    a3 = submit(db_url, alpha, "pp", predictions(labels, set(public[:5]) | set(hidden[:19])), "a3.csv", now=T0)
    b1 = submit(db_url, beta, "pp", predictions(labels, set(public[:10]) | set(hidden)), "b1.csv", now=T0)
    g1 = submit(db_url, gamma, "pp", predictions(labels, set(public[:15]) | set(hidden[:12])), "g1.csv", now=T0)

    chosen = final.select_final(db_url, alpha, "pp", [a1.submission_id, a2.submission_id], now=T0)
    assert chosen.submission_ids == [a1.submission_id, a2.submission_id] and chosen.deadline == T0 + timedelta(days=2)
    with pytest.raises(ValidationError, match="at most 2 finals"):
        final.select_final(db_url, alpha, "pp", [a1.submission_id, a2.submission_id, a3.submission_id], now=T0)
    with pytest.raises(ValidationError, match=f"no submission {b1.submission_id} of team 'alpha'"):
        final.select_final(db_url, alpha, "pp", [b1.submission_id], now=T0)
    final.select_final(db_url, beta, "pp", [b1.submission_id], now=T0)
    with pytest.raises(final.SelectionClosed, match="ended at 2030-01-03 12:00:00 UTC"):
        final.select_final(db_url, alpha, "pp", [a3.submission_id], now=T0 + timedelta(days=2))

    close_challenge(db_url, "pp")
    with pytest.raises(final.SelectionClosed, match="closed at"):
        final.select_final(db_url, beta, "pp", [b1.submission_id])
    with session_scope(db_url) as session:
        marks = dict(session.execute(sa.select(FinalSelection.submission_id, FinalSelection.chosen_by)).all())
        board = standings.compute(session, get_challenge(session, "pp"), replicates=200)
    assert marks == {a1.submission_id: "team", a2.submission_id: "team", b1.submission_id: "team",
                     g1.submission_id: "default"}
    assert board["part"] == "private" and board["closed"]
    official = {r["team"]: r for r in board["board"]}
    assert [r["team"] for r in board["board"]] == ["beta", "gamma", "alpha"]  # a3's 5% private error: not marked
    assert official["alpha"]["submission_id"] == a2.submission_id  # its better final on the private part
    assert official["beta"]["score"] == 0.0 and official["alpha"]["score"] == pytest.approx(17 / 20)
    assert [r["team"] for r in board["public"]] == ["alpha", "gamma", "beta"]
    assert (official["beta"]["shift"], official["gamma"]["shift"], official["alpha"]["shift"]) == (2, 0, -2)
    assert all(r["low"] <= r["rank"] <= r["high"] for r in board["board"])


def test_the_gate_answers_standings_and_finals_and_tells_nothing_private_before_the_close(sqlite_url: str) -> None:
    from gate_server import serving

    sqlite_url = create_schema(sqlite_url)
    labels, private = make(sqlite_url)
    public, hidden = sorted(set(labels) - private), sorted(private)
    alpha, beta = team(sqlite_url, "alpha"), team(sqlite_url, "beta")
    with serving(sqlite_url) as gate:
        # Private errors of 0.85 and 0.35: neither number may appear in any answer before the close.
        a = gate_client.submit(gate, alpha, "pp", predictions(labels, set(public) | set(hidden[:3])), "a.csv")
        b = gate_client.submit(gate, beta, "pp", predictions(labels, set(public[:12]) | set(hidden[:13])), "b.csv")
        chosen = gate_client.select_final(gate, alpha, "pp", [a["submission_id"]])
        assert chosen["submission_ids"] == [a["submission_id"]] and chosen["final_count"] == 2
        with pytest.raises(ValidationError, match="no submission"):
            gate_client.select_final(gate, alpha, "pp", [b["submission_id"]])
        before = gate_client.standings(gate, "pp")
        versus = gate_client.compare(gate, "pp", a["submission_id"], b["submission_id"])
        answers = json.dumps([a, b, chosen, before, versus, gate_client.challenges(gate)])
        for secret in ("0.85", "0.35"):  # as numbers of their own, not inside a longer one
            assert re.search(rf"(?<![\d.]){re.escape(secret)}(?!\d)", answers) is None
        assert [r["team"] for r in before["board"]] == ["alpha", "beta"] and before["part"] == "public"
        assert versus["difference"] == pytest.approx(-0.4) and versus["part"] == "public"
        close_challenge(sqlite_url, "pp")
        after = gate_client.standings(gate, "pp")
        with pytest.raises(LeaderboardError, match="closed at"):
            gate_client.select_final(gate, beta, "pp", [b["submission_id"]])
    assert [r["team"] for r in after["board"]] == ["beta", "alpha"] and after["part"] == "private"
    assert after["board"][0]["score"] == pytest.approx(0.35) and after["board"][0]["shift"] == 1


# --- hidden phases: no score anywhere a participant looks until the phase ends ---------------------------------

Y2020 = datetime(2020, 1, 1, tzinfo=UTC)
FAR = datetime(2099, 1, 1, tzinfo=UTC)  # a hidden phase still running whenever this test runs


def exported(url: str, slug: str, best_only: bool = True) -> str:
    from leaderboard.queries import leaderboard
    from leaderboard.site_data import board_csv, board_json

    board = leaderboard(url, slug, best_only=best_only)
    return board_csv(board, "classification") + board_json(board, {"slug": slug, "task": "classification"})


def test_a_hidden_phase_withholds_scores_from_board_exports_history_standings_and_gate(db_url: str) -> None:
    from gate_server import serving

    from leaderboard.admin import submit_report
    from leaderboard.queries import leaderboard, team_submissions

    labels, private = make(db_url)
    public = sorted(set(labels) - private)
    add(db_url, "pp", "early", Y2020 - timedelta(days=400), Y2020 - timedelta(days=300), quota=5,
        visibility="hidden")  # hidden, but over: its scores are shown
    add(db_url, "pp", "development", Y2020, Y2020 + timedelta(days=30), quota=5)
    add(db_url, "pp", "final", Y2020 + timedelta(days=30), FAR, quota=3, total=4, visibility="hidden")
    alpha, beta, gamma = team(db_url, "alpha"), team(db_url, "beta"), team(db_url, "gamma")
    # Public errors: alpha 50% (development) then 0% (final, hidden); gamma 75% (early: shown); beta 25% (final).
    dev = submit(db_url, alpha, "pp", predictions(labels, set(public[:10])), "a1.csv", label="alpha-dev",
                 now=Y2020 + timedelta(days=1))
    best = submit(db_url, alpha, "pp", predictions(labels, set(public)), "a2.csv", label="alpha-final",
                  now=Y2020 + timedelta(days=40))
    submit(db_url, gamma, "pp", predictions(labels, set(public[:5])), "g.csv", label="gamma-early",
           now=Y2020 - timedelta(days=350))
    assert best.quota_left == 2  # counted like any upload

    board = leaderboard(db_url, "pp")
    assert list(board["entry"]) == ["alpha-dev", "gamma-early"] and list(board["top5_err"]) == [0.5, 0.75]
    every = leaderboard(db_url, "pp", best_only=False)
    assert list(every["entry"]) == ["alpha-dev", "gamma-early"] and every.attrs["total"] == 2
    for text in (exported(db_url, "pp"), exported(db_url, "pp", best_only=False)):
        assert "alpha-final" not in text and "alpha-dev" in text
    history = team_submissions(db_url, "alpha").set_index("submission_id")
    assert history.loc[best.submission_id, "score"] != history.loc[best.submission_id, "score"]  # NaN
    assert history.loc[best.submission_id, "status"] == ("scored; hidden until 2099-01-01 00:00:00 UTC, the end of "
                                                          "hidden phase 'final'")
    assert history.loc[dev.submission_id, "score"] == 0.5 and history.loc[dev.submission_id, "status"] == ""
    with session_scope(db_url) as session:
        before = standings.compute(session, get_challenge(session, "pp"), replicates=50)
        with pytest.raises(ChallengeError, match=f"no submission {best.submission_id} on the board"):
            standings.compare(session, get_challenge(session, "pp"), best.submission_id, dev.submission_id)
    assert [r["entry"] for r in before["board"]] == ["alpha-dev", "gamma-early"]

    with serving(db_url) as gate:
        # An upload now falls in the hidden phase: scored and counted, its numbers withheld from the answer.
        sent = gate_client.submit(gate, beta, "pp", predictions(labels, set(public[:15])), "b.csv", name="beta-net")
        again = gate_client.submission(gate, alpha, best.submission_id)
        shown = gate_client.submission(gate, alpha, dev.submission_id)
        left = gate_client.quota(gate, beta, "pp")
        after_board = gate_client.standings(gate, "pp")
    for answer in (sent, again):
        assert answer["hidden"] is True and answer["value"] is None and answer["ci"] is None
        assert answer["rank"] is None and answer["on_board"] is False and answer["scores"] == {"metric": "top5_err"}
        assert answer["status"].startswith("scored; hidden until 2099-01-01 00:00:00 UTC")
        assert answer["scored_on"] == "public part: 20 of 40 test images"
    assert sent["quota_left"] == 2 and sent["board_size"] == 2
    assert shown["hidden"] is False and shown["value"] == 0.5 and shown["rank"] == 1
    assert left["phase"]["name"] == "final" and left["phase"]["visibility"] == "hidden"
    assert left["phase"]["ends_at"].startswith("2099-01-01")
    assert {r["rule"]: (r["limit"], r["used"], r["left"]) for r in left["phase"]["rules"]} == {
        "rolling window": (3, 1, 2), "in the phase": (4, 1, 3)}
    assert left["left"] == 2 and left["quota"] == 3 and left["reason"] == ""
    assert "beta" not in json.dumps(after_board)
    report = submit_report(sent)
    assert "hidden until 2099-01-01" in report and "top5_err =" not in report
    assert "scored on: public part: 20 of 40 test images; the final ranking uses the private part" in report
    with session_scope(db_url) as session:  # the database holds the number all along
        row = session.get(Submission, sent["submission_id"])
        assert row.primary_score == pytest.approx(0.25) and row.created_at is not None

    close_challenge(db_url, "pp")  # the close shows everything
    board = leaderboard(db_url, "pp")
    assert list(board["entry"]) == ["alpha-final", "beta-net", "gamma-early"]
    assert list(team_submissions(db_url, "alpha")["status"]) == ["", ""]


def test_convbench_submit_says_what_the_scores_cover(db_url: str, tmp_path, monkeypatch, capsys) -> None:
    import argparse

    from leaderboard.admin import TOKEN_ENV, cmd_submit

    labels, private = make(db_url)
    monkeypatch.setenv(TOKEN_ENV, team(db_url, "alpha"))
    path = tmp_path / "p.csv"
    path.write_bytes(predictions(labels, set(labels) - private))
    args = argparse.Namespace(db=db_url, challenge="pp", file=str(path), name="net", description="", code_url="",
                              server=None, token_file=None, select_final=None)
    assert cmd_submit(args) == 0
    printed = capsys.readouterr().out
    assert "top5_err = 0.0000" in printed and "rank: 1 of 1 on the board" in printed
    assert ("scored on: public part: 20 of 40 test images; the final ranking uses the private part of the test set, "
            "shown when the host closes the challenge") in printed


# --- the kit: the public fraction, never the parts ------------------------------------------------------------

def test_the_kit_states_the_public_fraction_and_is_the_same_whichever_image_is_private(db_url: str, tmp_path) -> None:
    from leaderboard import kit

    labels, private = make(db_url, fraction=0.25)
    with session_scope(db_url) as session:
        challenge = get_challenge(session, "pp")
        rows, files = kit.text_files(session, challenge)
        listing = kit.manifest(rows, files)
        kit.write_kit(session, "pp", tmp_path / "before")
        # Swap the parts as the owner: every public image private and every private one public.
        cid = challenge.id
        session.execute(sa.update(HeldLabel).where(HeldLabel.challenge_id == cid)
                        .values(part=sa.case((HeldLabel.part == "private", "public"), else_="private")))
        session.flush()
        assert {i for i, p in session.execute(sa.select(HeldLabel.image_id, HeldLabel.part)) if p == "private"} \
            == set(labels) - private
        rows_after, files_after = kit.text_files(session, challenge)
        kit.write_kit(session, "pp", tmp_path / "after")
    assert rows_after == rows and files_after == files and kit.manifest(rows_after, files_after) == listing
    before = sorted(p.relative_to(tmp_path / "before") for p in (tmp_path / "before").rglob("*"))
    after = sorted(p.relative_to(tmp_path / "after") for p in (tmp_path / "after").rglob("*"))
    assert before == after
    assert all((tmp_path / "before" / p).read_bytes() == (tmp_path / "after" / p).read_bytes() for p in before
               if (tmp_path / "before" / p).is_file())
    rules = json.loads(files[kit.RULES])
    assert rules["test_parts"]["public_fraction"] == 0.25 and rules["test_parts"]["final_selections"] == 2
    assert "private part" in rules["test_parts"]["final_ranking"]
    readme = files[kit.README].decode()
    assert "about 25% of its images" in readme and "--select-final" in readme
    assert not any(image_id in readme + files[kit.RULES].decode() for image_id in labels)
