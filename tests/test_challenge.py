"""The challenge server on both databases: challenges, tokens, quota under concurrency, no label leaks."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import workers.datasets
from db.engine import create_schema, session_scope
from db.schema import Challenge, HeldLabel, Run, Submission, Team, Throttle
from leaderboard import quota, scoring
from leaderboard.challenges import create_challenge, find_challenge
from leaderboard.errors import AuthError, ChallengeError, QuotaExceeded, ScoringError, ValidationError
from leaderboard.quota import quota_status, rescore, submit
from leaderboard.tokens import authenticate, create_team, hash_token, revoke
from workers.datasets import held_test_labels

OPTIONS = {"num_classes": 10, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 5}
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TOKENS: dict[str, str] = {}  # per database, for the property test's examples


@pytest.fixture
def url(db_url: str) -> str:
    return db_url


@pytest.fixture
def lite_url(sqlite_url: str) -> str:
    return create_schema(sqlite_url)


def predictions(labels: dict[str, int], right: float = 0.5, k: int = 5, seed: int = 0) -> bytes:
    """A top-k file for these labels: the first guess right on about `right` of the images."""
    rng = np.random.default_rng(seed)
    lines = ["image_id," + ",".join(f"pred_{j}" for j in range(1, k + 1))]
    for image_id, label in labels.items():
        others = [c for c in rng.permutation(OPTIONS["num_classes"]).tolist() if c != label]
        guesses = [label, *others[:k - 1]] if rng.random() < right else others[:k]
        lines.append(f"{image_id}," + ",".join(map(str, guesses)))
    return ("\n".join(lines) + "\n").encode()


def setup(url: str, quota_n: int = 2, slug: str = "syn") -> tuple[str, bytes]:
    create_challenge(url, slug, "synthetic", OPTIONS, title="Synthetic", quota=quota_n, public_fraction=1.0)
    with session_scope(url) as session:
        token = create_team(session, "alpha")
    return token, predictions(held_test_labels("synthetic", OPTIONS))


def another(seed: int) -> bytes:
    """Another file of predictions: a team's same file again would be answered from its earlier row."""
    return predictions(held_test_labels("synthetic", OPTIONS), seed=seed)


def count(url: str, **where) -> int:
    with session_scope(url) as session:
        return session.scalar(sa.select(sa.func.count(Submission.id)).filter_by(**where))


# --- challenges ---------------------------------------------------------------------------

def test_create_and_find_challenge(url: str) -> None:
    challenge = create_challenge(url, "syn", "synthetic", OPTIONS, quota=3, window_days=2)
    assert (challenge.task, challenge.metric, challenge.quota, challenge.window_days) == (
        "classification", "top5_err", 3, 2.0)
    assert challenge.class_names == workers.datasets.load_dataset("synthetic", OPTIONS).class_names
    with session_scope(url) as session:
        stored = dict(session.execute(sa.select(HeldLabel.image_id, HeldLabel.label)
                                      .where(HeldLabel.challenge_id == challenge.id)).all())
        assert stored == held_test_labels("synthetic", OPTIONS)
        # Options equal once defaults are filled in, and a "name" key, find the challenge; others do not.
        assert find_challenge(session, "synthetic", {**OPTIONS, "seed": 0, "name": "x"}).id == challenge.id
        assert find_challenge(session, "synthetic", {**OPTIONS, "seed": 1}) is None
        assert find_challenge(session, "digits", {}) is None
    with pytest.raises(ChallengeError, match="exists"):
        create_challenge(url, "syn", "synthetic", OPTIONS)
    with pytest.raises(ChallengeError, match="unknown dataset"):
        create_challenge(url, "other", "nope", {})
    with pytest.raises(ChallengeError, match="slug"):
        create_challenge(url, "Bad Slug", "synthetic", OPTIONS)
    with pytest.raises(ChallengeError, match=r"dataset\.colour: unknown field"):
        create_challenge(url, "other", "synthetic", {"colour": "red"})


def test_detection_challenge_end_to_end(url: str) -> None:
    options = {"image_size": 64, "train_images": 1, "val_images": 1, "test_images": 6}
    challenge = create_challenge(url, "scenes", "synthetic-scenes", options, quota=5)
    assert (challenge.task, challenge.metric) == ("detection", "map50")
    boxes = held_test_labels("synthetic-scenes", options)
    with session_scope(url) as session:
        token = create_team(session, "det")
        stored = session.scalar(sa.select(HeldLabel.boxes).where(HeldLabel.image_id == "test_000001"))
        assert stored == boxes["test_000001"]
    names = challenge.class_names
    rows = ["image_id,class_id,score,x1,y1,x2,y2"] + [
        f"{image_id},{names[int(c) - 1] if n % 2 else int(c)},0.9,{x1},{y1},{x2},{y2}"  # by name or by id
        for image_id, objects in boxes.items() for n, (x1, y1, x2, y2, c, _) in enumerate(objects)]
    result = submit(url, token, "scenes", "\n".join(rows).encode(), "dets.csv")
    assert result.scores["map50"] == pytest.approx(1.0) and result.primary_score == pytest.approx(0.0)
    assert result.scores["map_coco"] == pytest.approx(1.0)
    x1, y1, x2, y2, c, _ = boxes["test_000000"][0]
    wrong_class = c % len(names) + 1
    coco = f'[{{"image_id": "test_000000", "category_id": {wrong_class}, "bbox": [{x1}, {y1}, {x2 - x1}, {y2 - y1}], '
    result = submit(url, token, "scenes", (coco + '"score": 0.5}]').encode(), "dets.json")
    assert result.scores["map50"] == pytest.approx(0.0) and result.primary_score == pytest.approx(1.0)
    assert set(result.scores["ap50_per_class"]) == set(names)
    with pytest.raises(ValidationError, match=r"^line 2, class_id: class id 0 is out of range 1\.\.4"):
        submit(url, token, "scenes", b"image_id,class_id,score,x1,y1,x2,y2\ntest_000000,0,1,0,0,5,5\n", "d.csv")


# --- teams and tokens ---------------------------------------------------------------------

def test_tokens_are_hashed_and_failures_look_alike(url: str) -> None:
    with session_scope(url) as session:
        token = create_team(session, "alpha")
        gone = create_team(session, "beta")
        revoke(session, "beta")
    with session_scope(url) as session:
        stored = session.scalar(sa.select(Team.token_hash).where(Team.name == "alpha"))
        assert stored == hash_token(token) and token not in stored and len(token) >= 43
        assert authenticate(session, token).name == "alpha"
        wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
        messages = set()
        for attempt in (wrong, gone, "unknown-" + token, "", None):
            with pytest.raises(AuthError) as info:
                authenticate(session, attempt)
            messages.add((type(info.value), str(info.value)))
        assert messages == {(AuthError, "invalid or revoked token")}
        with pytest.raises(ChallengeError, match="exists"):
            create_team(session, "alpha")
        with pytest.raises(ChallengeError, match="no team"):
            revoke(session, "nobody")


# The token throttle (now in the database, leaderboard.throttle) is tested in tests/test_sec_throttle.py.


# --- submitting ---------------------------------------------------------------------------

def test_submit_scores_counts_and_refuses_past_the_quota(url: str) -> None:
    token, data = setup(url)
    first = submit(url, token, "syn", data, "p.csv", label="resnet", now=T0)
    assert first.quota_left == 1 and first.next_slot_at is None and not first.existing
    assert 0 < first.scores["top1_err"] < 1 and first.scores["top5_err"] == first.primary_score
    assert first.scores["metric"] == "top5_err" and first.scores["n_images"] == 50
    second = submit(url, token, "syn", another(1), "p.csv", now=T0 + timedelta(days=1))
    assert second.quota_left == 0 and second.next_slot_at == T0 + timedelta(days=7)
    with pytest.raises(QuotaExceeded, match=r"next slot frees at 2030-01-08 12:00:00 UTC") as info:
        submit(url, token, "syn", another(2), "p.csv", now=T0 + timedelta(days=6, hours=23))
    assert info.value.next_slot_at == T0 + timedelta(days=7)
    third = submit(url, token, "syn", another(2), "p.csv", now=T0 + timedelta(days=7, seconds=1))  # the window rolled
    assert third.quota_left == 0 and third.next_slot_at == T0 + timedelta(days=8)
    assert count(url) == 3


def test_a_rejected_file_costs_nothing(url: str) -> None:
    token, data = setup(url, quota_n=1)
    for bad in (b"", data.replace(b"pred_5", b"pred_6"), data[: len(data) // 2]):
        with pytest.raises(ValidationError):
            submit(url, token, "syn", bad, "p.csv")
    assert count(url) == 0
    assert submit(url, token, "syn", data, "p.csv").quota_left == 0


def test_official_team_is_not_bound(url: str) -> None:
    _, data = setup(url, quota_n=1)
    with session_scope(url) as session:
        create_team(session, "baselines", official=True)
    with session_scope(url) as session:
        team = session.scalar(sa.select(Team).where(Team.name == "baselines"))
    results = [submit(url, team, "syn", data, "p.csv", label=f"arch{i}") for i in range(4)]
    assert [r.quota_left for r in results] == [None] * 4 and count(url) == 4


def test_a_run_is_submitted_once(url: str) -> None:
    _, data = setup(url)
    with session_scope(url) as session:
        create_team(session, "baselines", official=True)
        session.add(Run(job_id="job-1", suite="smoke", arch="resnet18", dataset="synthetic"))
    with session_scope(url) as session:
        team = session.scalar(sa.select(Team).where(Team.name == "baselines"))
    first = submit(url, team, "syn", data, "p.csv", label="resnet18", run_id="job-1")
    again = submit(url, team, "syn", data, "p.csv", label="resnet18", run_id="job-1")
    assert again.existing and again.submission_id == first.submission_id and again.scores == first.scores
    assert count(url, run_id="job-1") == 1
    with pytest.raises(ChallengeError, match="no run"):
        submit(url, team, "syn", data, "p.csv", run_id="job-unknown")


@pytest.mark.parametrize("stale_precheck", [False, True], ids=["plain", "all-past-the-precheck"])
def test_twenty_concurrent_uploads_yield_exactly_the_quota(url: str, monkeypatch, stale_precheck: bool) -> None:
    token, _ = setup(url, quota_n=2)
    uploads = 20
    files = [another(i) for i in range(uploads)]  # twenty different files: the same one would be charged once
    if stale_precheck:
        # Hold every upload until all have passed the unlocked early check: only the lock can stop them now.
        gate, lock_team = threading.Barrier(uploads), quota._lock_team
        monkeypatch.setattr(quota, "_lock_team", lambda session, team_id: (gate.wait(60), lock_team(session, team_id))[1])
    start = threading.Barrier(uploads)
    accepted, refused, other = [], [], []

    def upload(i: int) -> None:
        start.wait(60)
        try:
            accepted.append(submit(url, token, "syn", files[i], f"p{i}.csv", label=f"try{i}"))
        except QuotaExceeded as exc:
            refused.append(exc)
        except BaseException as exc:  # noqa: BLE001 - any other outcome fails the test below
            other.append(exc)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(uploads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert other == [] and len(accepted) == 2 and len(refused) == uploads - 2
    assert count(url) == 2
    assert sorted(r.quota_left for r in accepted) == [0, 1]


def test_concurrent_submissions_of_one_run_make_one_row(url: str) -> None:
    _, data = setup(url)
    with session_scope(url) as session:
        create_team(session, "baselines", official=True)
        session.add(Run(job_id="job-1", suite="smoke", arch="vgg11", dataset="synthetic"))
    with session_scope(url) as session:
        team = session.scalar(sa.select(Team).where(Team.name == "baselines"))
    start, results, other = threading.Barrier(8), [], []

    def upload() -> None:
        start.wait(60)
        try:
            results.append(submit(url, team, "syn", data, "p.csv", run_id="job-1"))
        except BaseException as exc:  # noqa: BLE001
            other.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert other == [] and len({r.submission_id for r in results}) == 1 and count(url) == 1


def test_revoked_team_cannot_submit(url: str) -> None:
    token, data = setup(url)
    with session_scope(url) as session:
        revoke(session, "alpha")
    with pytest.raises(AuthError, match="^invalid or revoked token$"):
        submit(url, token, "syn", data, "p.csv")
    with pytest.raises(ChallengeError, match="no challenge 'nope'"):
        with session_scope(url) as session:
            token = create_team(session, "gamma")
        submit(url, token, "nope", data, "p.csv")


def test_rescore_and_quota_status(url: str) -> None:
    token, data = setup(url)
    result = submit(url, token, "syn", data, "p.csv", now=T0)
    with session_scope(url) as session:
        session.execute(sa.update(Submission).values(primary_score=9.0, scores={}))
    scored = rescore(url, result.submission_id)
    assert scored.primary_score == result.primary_score and scored.scores == result.scores
    with session_scope(url) as session:
        row = session.get(Submission, result.submission_id)
        assert row.primary_score == result.primary_score
        team = session.scalar(sa.select(Team).where(Team.name == "alpha"))
        status = quota_status(session, team, session.get(Challenge, row.challenge_id), T0 + timedelta(hours=1))
        assert (status.used, status.left, status.next_slot_at) == (1, 1, None)
    with pytest.raises(ChallengeError, match="no submission 99"):
        rescore(url, 99)


# --- invariant 1: labels stay in the scorer -----------------------------------------------

def test_no_error_message_depends_on_the_held_labels(url: str, monkeypatch) -> None:
    """Two challenges with the same ids and different labels give the same errors, word for word."""
    real = held_test_labels("synthetic", OPTIONS)
    shifted = {i: (label + 1) % OPTIONS["num_classes"] for i, label in real.items()}
    create_challenge(url, "real", "synthetic", OPTIONS, quota=1)
    monkeypatch.setattr(workers.datasets, "held_test_labels", lambda name, options: shifted)
    create_challenge(url, "shifted", "synthetic", OPTIONS, quota=1)
    monkeypatch.undo()
    with session_scope(url) as session:
        token = create_team(session, "alpha")
    good = predictions(real)
    lines = good.decode().splitlines()
    bad_files = [
        b"", b"\xff\xfe", good.replace(b"pred_5", b"pred_6"), "\n".join(lines[:-3]).encode(),
        "\n".join(lines + [lines[4]]).encode(), good.replace(b"test_000007", b"test_999999"),
        "\n".join(lines[:5] + [lines[5].rsplit(",", 1)[0] + ",10"] + lines[6:]).encode(),
        "\n".join(lines[:5] + [lines[5].rsplit(",", 1)[0] + ",zebra"] + lines[6:]).encode(),
        "\n".join(lines[:5] + [lines[5] + "," + lines[5].split(",")[1]] + lines[6:]).encode(),
    ]

    def errors(slug: str) -> list[str]:
        found = []
        for data in bad_files:
            with pytest.raises(ValidationError) as info:
                submit(url, token, slug, data, "p.csv")
            found.append(str(info.value))
        submit(url, token, slug, good, "p.csv", now=T0)
        with pytest.raises(QuotaExceeded) as info:
            submit(url, token, slug, another(1), "p.csv", now=T0)
        found.append(str(info.value).replace(slug, "SLUG"))
        return found

    assert errors("real") == errors("shifted")
    # A failure inside the scorer says nothing of what it was looking at.
    def leaky_scorer(guesses, labels):
        raise ValueError(f"labels were {labels.tolist()}")

    monkeypatch.setattr(scoring, "classification_scores", leaky_scorer)
    with session_scope(url) as session:
        create_team(session, "beta")
        other = create_team(session, "gamma")
    with pytest.raises(ScoringError) as info:
        submit(url, other, "real", good, "p.csv")
    assert "labels" not in str(info.value) and "[" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_test_ids_and_their_order_carry_no_label_information(lite_url: str) -> None:
    options = {**OPTIONS, "test_per_class": 60}
    challenge = create_challenge(lite_url, "big", "synthetic", options)
    with session_scope(lite_url) as session:
        rows = session.execute(sa.select(HeldLabel.image_id, HeldLabel.label)
                               .where(HeldLabel.challenge_id == challenge.id)).all()
    labels = np.array([label for _, label in sorted(rows)])
    n, n_classes = len(labels), options["num_classes"]
    assert n == 600
    position = np.arange(n)
    assert abs(np.corrcoef(position, labels)[0, 1]) < 0.12  # about 3 standard errors
    assert not (np.all(np.diff(labels) >= 0) or np.all(np.diff(labels) <= 0))
    repeats = np.mean(labels[1:] == labels[:-1])  # neighbours share a class about 1 / n_classes of the time
    assert 0.5 / n_classes < repeats < 1.5 / n_classes
    # Each block of 60 consecutive ids holds a mix of classes, not a run of one.
    assert min(len(set(labels[i:i + 60])) for i in range(0, n, 60)) >= n_classes - 2
    # The ids themselves are sequential and say nothing: test_000000 .. in order.
    assert [i for i, _ in sorted(rows)] == [f"test_{i:06d}" for i in range(n)]


# --- property: mutated uploads never cost quota and never raise anything else --------------

@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_uploads_only_fail_validation_and_never_use_quota(lite_url: str, data) -> None:
    with session_scope(lite_url) as session:
        if session.scalar(sa.select(Challenge.id)) is None:
            create_challenge(session, "syn", "synthetic", OPTIONS, quota=10**6)
            TOKENS[lite_url] = create_team(session, "alpha")
        session.execute(sa.delete(Throttle))  # 60 examples, most rejected: past the rejected-upload throttle's 20
    good = predictions(held_test_labels("synthetic", OPTIONS))
    at = data.draw(st.integers(0, len(good)))
    cut = data.draw(st.integers(0, 12))
    piece = data.draw(st.one_of(st.binary(max_size=8), st.sampled_from([b",", b"\n", b"\xff", b"7,", b"nan", b"99"])))
    upload = good[:at] + piece + good[at + cut:]
    before = count(lite_url)
    try:
        result = submit(lite_url, TOKENS[lite_url], "syn", upload, "p.csv")
    except ValidationError:
        assert count(lite_url) == before
    else:  # a mutation that gives a file sent before (the good one, say) is answered from its row, for nothing
        assert count(lite_url) == before + (0 if result.existing else 1)

