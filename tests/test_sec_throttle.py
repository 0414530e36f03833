"""Issue #12: throttles in the database, time from the database server.

Wrong tokens are throttled by client address and by token hash prefix, not by browser session; the
counts live in the database (every process sees them); rejected uploads have a throttle of their own;
the quota window and a submission's time come from the database's clock, not the submitter's.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from gate_server import serving
from streamlit.testing.v1 import AppTest

from db.engine import create_schema, make_sessionmaker, session_scope
from db.schema import Submission, Team
from db.schema import Throttle as ThrottleRow
from leaderboard import throttle
from leaderboard.admin import cli_client
from leaderboard.challenges import create_challenge
from leaderboard.errors import AuthError, QuotaExceeded, Throttled, ValidationError
from leaderboard.gate_client import GATE_URL_ENV
from leaderboard.quota import submit
from leaderboard.throttle import AUTH, REJECTED_UPLOADS, Policy
from leaderboard.tokens import authenticate, create_team
from workers.datasets import held_test_labels

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"num_classes": 10, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 5}
ADDRESS = "198.51.100.7"


@pytest.fixture
def url(db_url: str) -> str:
    return db_url


def good_file(seed: int = 0) -> bytes:
    """A valid file; another `seed`, another file (a team's same file again is answered from its earlier row)."""
    labels = held_test_labels("synthetic", OPTIONS)
    rng = np.random.default_rng(seed)
    lines = ["image_id,pred_1,pred_2,pred_3,pred_4,pred_5"]
    for image_id, label in labels.items():
        others = [c for c in rng.permutation(10).tolist() if c != label]
        lines.append(f"{image_id}," + ",".join(map(str, [label, *others[:4]])))
    return ("\n".join(lines) + "\n").encode()


def setup(url: str, quota: int = 2, teams: tuple[str, ...] = ("alpha",)) -> dict[str, str]:
    create_challenge(url, "syn", "synthetic", OPTIONS, quota=quota, public_fraction=1.0)
    with session_scope(url) as session:
        return {name: create_team(session, name) for name in teams}


def wrong_token() -> str:
    return "cbt_" + secrets.token_urlsafe(32)


def try_token(url: str, token: str, client: str | None) -> str:
    """One attempt in a session of its own (a fresh browser session): 'ok', 'auth' or 'throttled'."""
    with make_sessionmaker(url)() as session:
        try:
            authenticate(session, token, client)
        except AuthError:
            return "auth"
        except Throttled:
            return "throttled"
        return "ok"


def in_threads(n: int, work: Callable[[int], str]) -> list[str]:
    """`work(i)` for i < n, all started together; the outcomes (an exception's repr if one escaped)."""
    start, results = threading.Barrier(n), [""] * n

    def run(i: int) -> None:
        start.wait(60)
        try:
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - shown by the assertion
            results[i] = repr(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


# --- the policy's arithmetic and keys ----------------------------------------------------------------

def test_the_wait_doubles_from_the_last_failure_is_capped_and_ends_with_the_window() -> None:
    policy = Policy("t", free=3, window_s=3600, base_s=2, cap_s=60, what="x")
    start = datetime(2030, 1, 1, tzinfo=UTC)
    last = start + timedelta(seconds=100)
    assert throttle.retry_at(policy, 2, start, last, last) is None  # within the free tries
    assert throttle.retry_at(policy, 3, start, last, last) == last + timedelta(seconds=2)
    assert throttle.retry_at(policy, 5, start, last, last) == last + timedelta(seconds=8)
    assert throttle.retry_at(policy, 40, start, last, last) == last + timedelta(seconds=60)
    assert throttle.retry_at(policy, 5, start, last, last + timedelta(seconds=8)) is None
    late = start + timedelta(seconds=3590)
    assert throttle.retry_at(policy, 40, start, late, late) == start + timedelta(seconds=3600)
    assert throttle.retry_at(policy, 40, start, late, start + timedelta(seconds=3600)) is None
    # The rejected-upload policy: 20 free, then nothing until the hour is over.
    assert throttle.retry_at(REJECTED_UPLOADS, 19, start, last, last) is None
    assert throttle.retry_at(REJECTED_UPLOADS, 20, start, last, last) == start + timedelta(hours=1)


def test_client_keys_are_what_an_attacker_cannot_renew_for_free() -> None:
    assert throttle.client_key("203.0.113.9") == "addr:203.0.113.9"
    assert throttle.client_key("::ffff:203.0.113.9") == "addr:203.0.113.9"
    # One subscriber holds a whole IPv6 /64: every address in it is one key.
    assert throttle.client_key("2001:db8:1:2::1") == throttle.client_key("2001:db8:1:2:ffff::42") == \
        "addr:2001:db8:1:2::/64"
    assert throttle.client_key("2001:db8:1:3::1") != throttle.client_key("2001:db8:1:2::1")
    assert throttle.client_key("cli:ann@host") == "cli:ann@host"
    long = throttle.client_key("cli:" + "x" * 300)
    assert len(long) == throttle.KEY_CHARS and long != throttle.client_key("cli:" + "x" * 299 + "y")
    assert cli_client().startswith("cli:") and "@" in cli_client()


# --- wrong tokens ------------------------------------------------------------------------------------

def test_fifty_wrong_tokens_from_fresh_sessions_are_throttled_by_address(url: str) -> None:
    tokens = setup(url)
    outcomes = [try_token(url, wrong_token(), ADDRESS) for _ in range(50)]
    assert outcomes == ["auth"] * AUTH.free + ["throttled"] * (50 - AUTH.free)
    # The right token from that address waits too (it is refused before it is looked up) ...
    assert try_token(url, tokens["alpha"], ADDRESS) == "throttled"
    # ... and gets in from anywhere else: one address's guesses lock no team out.
    assert try_token(url, tokens["alpha"], "203.0.113.20") == "ok"
    with make_sessionmaker(url)() as session, \
            pytest.raises(Throttled, match=r"^too many failed attempts; try again in \d+ s") as info:
        authenticate(session, wrong_token(), ADDRESS)
    assert 1 <= info.value.retry_after_s <= AUTH.base_s
    assert info.value.retry_at.tzinfo is not None
    key = throttle.state(make_sessionmaker(url)().get_bind(), AUTH, throttle.client_key(ADDRESS))
    assert key.failures == AUTH.free and key.retry_at == info.value.retry_at


def test_fifty_concurrent_wrong_tokens_get_exactly_the_free_tries(url: str) -> None:
    setup(url)
    outcomes = in_threads(50, lambda i: try_token(url, wrong_token(), ADDRESS))
    assert sorted(outcomes) == ["auth"] * AUTH.free + ["throttled"] * (50 - AUTH.free)


def test_concurrent_right_tokens_are_not_throttled(url: str) -> None:
    tokens = setup(url)
    assert in_threads(30, lambda i: try_token(url, tokens["alpha"], ADDRESS)) == ["ok"] * 30
    with session_scope(url) as session:  # a success writes nothing
        assert session.scalar(sa.select(sa.func.count()).select_from(ThrottleRow)) == 0


def test_one_token_tried_from_fifty_addresses_is_throttled_by_its_hash_prefix(url: str) -> None:
    setup(url)
    token = wrong_token()
    outcomes = [try_token(url, token, f"203.0.113.{i}") for i in range(50)]
    assert outcomes == ["auth"] * AUTH.free + ["throttled"] * (50 - AUTH.free)
    # Without any client key (a library caller) the token's own key still counts.
    assert try_token(url, token, None) == "throttled"
    assert try_token(url, wrong_token(), "203.0.113.99") == "auth"


def test_a_throttled_key_frees_when_its_wait_is_over(url: str) -> None:
    tokens = setup(url)
    fast = Policy("auth-test", free=2, window_s=3600, base_s=0.5, cap_s=0.5, what="failed attempts")
    with make_sessionmaker(url)() as session:
        for _ in range(2):
            with pytest.raises(AuthError):
                authenticate(session, wrong_token(), ADDRESS, policy=fast)
        with pytest.raises(Throttled) as info:
            authenticate(session, tokens["alpha"], ADDRESS, policy=fast)
        wait = (info.value.retry_at - throttle.server_now(session.connection())).total_seconds()
        session.rollback()
        threading.Event().wait(max(wait, 0) + 0.05)
        assert authenticate(session, tokens["alpha"], ADDRESS, policy=fast).name == "alpha"


SCRIPT = """
import sys
from db.engine import make_sessionmaker
from leaderboard.admin import cli_client
from leaderboard.errors import AuthError
from leaderboard.tokens import authenticate
url, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with make_sessionmaker(url)() as session:
        try:
            authenticate(session, f"cbt_wrong-{i}", cli_client())
        except AuthError:
            pass
"""


def test_the_count_survives_across_processes_and_the_cli_passes_its_key(url: str, tmp_path: Path) -> None:
    setup(url)
    bind, key = make_sessionmaker(url)().get_bind(), throttle.client_key(cli_client())
    # One process fails AUTH.free times, each with a different token: only the client key adds up ...
    done = subprocess.run([sys.executable, "-c", SCRIPT, url, str(AUTH.free)], cwd=ROOT, capture_output=True, check=False,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert throttle.state(bind, AUTH, key).failures == AUTH.free  # ... and its count outlives it
    assert try_token(url, wrong_token(), cli_client()) == "throttled"  # this process is refused by it
    threading.Event().wait(AUTH.base_s + 0.2)  # the first wait (2 s) over, the command line may try once
    predictions = tmp_path / "p.csv"
    predictions.write_bytes(good_file())
    cli = subprocess.run([sys.executable, "-m", "leaderboard", "admin", "submit", "--db", url, "--challenge", "syn",
                          str(predictions)], env={**os.environ, "CONVBENCH_TOKEN": wrong_token()},
                         cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert cli.returncode == 1 and "invalid or revoked token" in cli.stderr, cli.stderr
    state = throttle.state(bind, AUTH, key)  # the command line's failure counted under its own key
    assert state.failures == AUTH.free + 1 and state.retry_at is not None


def test_the_submit_page_throttles_fresh_browser_sessions(sqlite_url: str, monkeypatch) -> None:
    """The gate keys the page's client by address, not by browser session: each AppTest run is a new session."""
    url = create_schema(sqlite_url)
    tokens = setup(url)
    monkeypatch.setenv("CONVBENCH_DB", url)
    errors = []
    with serving(url) as gate:
        monkeypatch.setenv(GATE_URL_ENV, gate)
        errors = sessions_signing_in_with_a_wrong_token(AUTH.free + 2)
    assert errors[:AUTH.free] == ["invalid or revoked token"] * AUTH.free
    assert all(e.startswith("too many failed attempts; try again in") for e in errors[AUTH.free:]), errors
    assert tokens  # the team exists: a right token would have been refused the same way


def sessions_signing_in_with_a_wrong_token(count: int) -> list[str]:
    errors = []
    for _ in range(count):
        app = AppTest.from_file(str(ROOT / "leaderboard" / "app.py"), default_timeout=60).run()
        app.switch_page("views/submit.py").run()
        app.text_input(key="token").input(wrong_token())
        next(b for b in app.button if b.label == "Show my submissions").click().run()
        assert not app.exception, app.exception
        errors.append(app.error[0].value)
    return errors


# --- rejected uploads ----------------------------------------------------------------------------------

def count_submissions(url: str) -> int:
    with session_scope(url) as session:
        return session.scalar(sa.select(sa.func.count(Submission.id)))


def test_rejected_uploads_have_a_generous_throttle_of_their_own(url: str) -> None:
    tokens = setup(url, teams=("alpha", "beta", "gamma"))
    for _ in range(REJECTED_UPLOADS.free):
        with pytest.raises(ValidationError):
            submit(url, tokens["alpha"], "syn", b"", "p.csv", throttle_key=ADDRESS)
    with pytest.raises(Throttled, match=r"^too many rejected uploads; try again in \d+ s \(at .* UTC\)") as info:
        submit(url, tokens["alpha"], "syn", good_file(), "p.csv", throttle_key="203.0.113.50")  # keyed by team
    assert 3500 < info.value.retry_after_s <= 3600
    with pytest.raises(Throttled):  # keyed by address: another team from the same address waits too
        submit(url, tokens["beta"], "syn", good_file(), "p.csv", throttle_key=ADDRESS)
    # Another team elsewhere is untouched; no rejected file cost any quota; wrong tokens count apart.
    assert submit(url, tokens["gamma"], "syn", good_file(), "p.csv", throttle_key="203.0.113.60").quota_left == 1
    assert count_submissions(url) == 1
    assert try_token(url, tokens["alpha"], ADDRESS) == "ok"
    with session_scope(url) as session:
        team = session.scalar(sa.select(Team).where(Team.name == "alpha"))
        session.execute(sa.update(Team).where(Team.id == team.id).values(official=True))
    # The benchmark's own (official) runs are not bound by it.
    assert submit(url, tokens["alpha"], "syn", good_file(), "p.csv", throttle_key=ADDRESS).quota_left is None


def test_concurrent_rejected_uploads_get_exactly_the_free_tries(url: str) -> None:
    tokens = setup(url)

    def upload(i: int) -> str:
        try:
            submit(url, tokens["alpha"], "syn", b"image_id,pred_1\n", f"p{i}.csv", throttle_key=ADDRESS)
        except ValidationError:
            return "rejected"
        except Throttled:
            return "throttled"
        return "accepted"

    outcomes = in_threads(30, upload)
    assert sorted(outcomes) == ["rejected"] * REJECTED_UPLOADS.free + ["throttled"] * 10
    assert count_submissions(url) == 0


def test_valid_uploads_refund_their_charge(url: str) -> None:
    tokens = setup(url, quota=100)
    for i in range(REJECTED_UPLOADS.free + 5):
        submit(url, tokens["alpha"], "syn", good_file(i), f"p{i}.csv", throttle_key=ADDRESS)
    with session_scope(url) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ThrottleRow)) == 0


# --- time from the database server -----------------------------------------------------------------

SKEWED_CLI = """
import sys, time
from datetime import datetime, timedelta, timezone
skew = timedelta(days=float(sys.argv[1]))
real_time = time.time
time.time = lambda: real_time() + skew.total_seconds()  # this process's clock is off by `skew` ...

def skewed_utcnow():
    return datetime.now(timezone.utc) + skew

import db.schema
import leaderboard.quota
db.schema.utcnow = skewed_utcnow  # ... and so is the project's clock function, where the code took it from
if hasattr(leaderboard.quota, "utcnow"):
    leaderboard.quota.utcnow = skewed_utcnow
from leaderboard.__main__ import main
print("clock", db.schema.utcnow().isoformat())
codes = [main(argv.split("\\x1f")) for argv in sys.argv[2:]]
print("codes", codes)
"""


def submit_skewed(url: str, token: str, paths: list[Path], skew_days: float) -> str:
    argvs = ["\x1f".join(["admin", "submit", "--db", url, "--challenge", "syn", str(path)]) for path in paths]
    done = subprocess.run([sys.executable, "-c", SKEWED_CLI, str(skew_days), *argvs], cwd=ROOT,
                          env={**os.environ, "CONVBENCH_TOKEN": token}, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    clock = datetime.fromisoformat(done.stdout.split("clock ", 1)[1].split()[0])
    assert abs((clock - datetime.now(UTC)).total_seconds() - skew_days * 86400) < 600  # the skew took hold
    return done.stdout + done.stderr


@pytest.mark.parametrize("skew_days", [-8.0, 8.0], ids=["clock-behind", "clock-ahead"])
def test_a_process_with_a_skewed_clock_gets_no_more_than_the_quota(url: str, tmp_path: Path,
                                                                   skew_days: float) -> None:
    tokens = setup(url, quota=2)
    paths = [tmp_path / f"p{i}.csv" for i in range(2)]  # two files: the same one again would cost nothing
    for i, path in enumerate(paths):
        path.write_bytes(good_file(i))
    if skew_days < 0:
        # Behind: its rows would have been stamped 8 days ago, out of the window, leaving 2 more slots.
        out = submit_skewed(url, tokens["alpha"], paths, skew_days)
        assert "codes [0, 0]" in out
        with pytest.raises(QuotaExceeded):
            submit(url, tokens["alpha"], "syn", good_file(2), "p.csv")
    else:
        # Ahead: its window would have started a day from now, counting none of today's rows.
        for i in (2, 3):
            submit(url, tokens["alpha"], "syn", good_file(i), "p.csv")
        out = submit_skewed(url, tokens["alpha"], paths[:1], skew_days)
        assert "codes [1]" in out and "quota reached: 2 of 2" in out
    assert count_submissions(url) == 2
    with make_sessionmaker(url)() as session:
        now = throttle.server_now(session.connection())
        stamps = list(session.scalars(sa.select(Submission.created_at)))
    assert all(abs((throttle._aware(s) - now).total_seconds()) < 120 for s in stamps)  # the server's time


def test_server_now_is_the_databases_utc_clock(url: str) -> None:
    with make_sessionmaker(url)() as session:
        first = throttle.server_now(session.connection())
        second = throttle.server_now(session.connection())
    assert first.utcoffset() == timedelta(0) and first <= second
    assert abs((first - datetime.now(UTC)).total_seconds()) < 60  # this machine's clock is right
    if url.startswith("sqlite"):
        assert first.microsecond % 1000 == 0  # SQLite's clock has milliseconds, not only whole seconds


def test_an_explicit_now_is_still_honoured_for_backfills(url: str) -> None:
    tokens = setup(url, quota=1)
    past = datetime(2030, 1, 1, 12, tzinfo=UTC)
    result = submit(url, tokens["alpha"], "syn", good_file(), "p.csv", now=past)
    assert result.quota_left == 0 and result.next_slot_at == past + timedelta(days=7)
    with session_scope(url) as session:
        stamp = session.scalar(sa.select(Submission.created_at))
    assert throttle._aware(stamp) == past


def test_the_gate_role_may_use_the_throttles_table() -> None:
    """db/roles.py grants the gate's role what the throttle does (SELECT, INSERT, UPDATE, DELETE); the site's none."""
    from db.roles import GATE_PRIVILEGES, SITE_PRIVILEGES

    assert set(GATE_PRIVILEGES["throttles"]) >= {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert SITE_PRIVILEGES["throttles"] == ()


def test_clear_lifts_a_lock_out(url: str) -> None:
    tokens = setup(url)
    for _ in range(AUTH.free):
        try_token(url, wrong_token(), ADDRESS)
    assert try_token(url, tokens["alpha"], ADDRESS) == "throttled"
    bind = make_sessionmaker(url)().get_bind()
    assert throttle.clear(bind, AUTH, throttle.client_key(ADDRESS))
    assert try_token(url, tokens["alpha"], ADDRESS) == "ok"
    assert throttle.state(bind, AUTH, throttle.client_key(ADDRESS)) == throttle.KeyState(0, None)
