"""The audit trail (issue #15 point 6) on SQLite and PostgreSQL: what is recorded, one chain under concurrent
appends, and `convbench admin audit verify` naming an edited or deleted row."""
from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
import sqlalchemy as sa

from db.engine import make_engine, session_scope
from db.schema import AuditEvent
from leaderboard import audit
from leaderboard.admin import add_admin_commands, run
from leaderboard.challenges import create_challenge
from leaderboard.errors import AuthError, QuotaExceeded, ValidationError
from leaderboard.quota import rescore, submit
from leaderboard.tokens import authenticate, create_team, revoke
from workers.datasets import held_test_labels

OPTIONS = {"num_classes": 10, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 5}


def predictions(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    rows = [f"{i}," + ",".join(map(str, rng.permutation(10)[:5])) for i in held_test_labels("synthetic", OPTIONS)]
    return ("image_id,pred_1,pred_2,pred_3,pred_4,pred_5\n" + "\n".join(rows) + "\n").encode()


def events(url: str) -> list[AuditEvent]:
    with session_scope(url) as session:
        return list(session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id)))


def verify_cli(url: str, capsys) -> tuple[int, str]:
    import argparse

    parser = argparse.ArgumentParser()
    add_admin_commands(parser)
    code = run(parser.parse_args(["audit", "verify", "--db", url]))
    return code, capsys.readouterr().out


def test_every_outcome_is_recorded_and_the_chain_verifies(db_url: str, capsys) -> None:
    challenge = create_challenge(db_url, "aud", "synthetic", OPTIONS, quota=1)
    with session_scope(db_url) as session:
        token = create_team(session, "alpha")
    with pytest.raises(ValidationError):
        submit(db_url, token, "aud", b"image_id,pred_1\nnope,1\n", "bad.csv", throttle_key="10.0.0.1")
    first = submit(db_url, token, "aud", predictions(0), "p.csv", throttle_key="10.0.0.1")
    with pytest.raises(QuotaExceeded):
        submit(db_url, token, "aud", predictions(1), "p2.csv", throttle_key="10.0.0.1")
    with session_scope(db_url) as session, pytest.raises(AuthError):
        authenticate(session, "cbt_wrong", "10.0.0.9")
    rescore(db_url, first.submission_id)
    with session_scope(db_url) as session:
        revoke(session, "alpha")

    rows = events(db_url)
    assert [r.action for r in rows] == ["challenge.created", "token.issued", "submission.rejected",
                                        "submission.accepted", "submission.quota_refused", "auth.failure",
                                        "submission.rescored", "token.revoked"]
    assert [r.id for r in rows] == list(range(1, 9)) and rows[0].prev_hash == audit.GENESIS
    assert all(r.challenge_id == challenge.id for r in rows if r.action.startswith(("submission", "challenge")))
    rejected, accepted, refused, failed, rescored = rows[2], rows[3], rows[4], rows[5], rows[6]
    assert accepted.actor == "alpha" and accepted.subject == f"submission {first.submission_id}"
    assert "nope" in rejected.detail["reason"] and refused.detail["used"] == 1 and "quota" in refused.detail["reason"]
    assert failed.actor == "10.0.0.9" and "cbt_wrong" not in str(failed.detail)  # never the token itself
    assert rescored.detail["old"]["primary_score"] == rescored.detail["new"]["primary_score"] == first.primary_score
    with session_scope(db_url) as session:
        assert audit.verify(session) is None
    code, out = verify_cli(db_url, capsys)
    assert code == 0 and "OK: 8 rows" in out


def _fill(url: str, n: int) -> None:
    with session_scope(url) as session:
        audit.record_many(session, [audit.Event("test.event", f"actor {i}", {"i": i, "x": [1.5, None]})
                                    for i in range(n)])


def test_an_edited_row_is_named(db_url: str, capsys) -> None:
    _fill(db_url, 6)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:  # the content edited, its stored hash left as it was
        conn.execute(sa.text("UPDATE audit_log SET actor = 'someone else' WHERE id = 4"))
    with session_scope(db_url) as session:
        assert audit.verify(session) == 4
    code, out = verify_cli(db_url, capsys)
    assert code == 1 and "BROKEN at row 4" in out and "edited" in out
    with session_scope(db_url) as session:  # ... and its hash recomputed to match: the next row no longer links to it
        row = next(r for r in audit.stored_rows(session) if r.id == 4)
        forged = audit.row_hash(*row[:-1])
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET hash = :h WHERE id = 4"), {"h": forged})
    with session_scope(db_url) as session:
        assert audit.verify(session) == 5
    with engine.begin() as conn:  # a detail rewritten, even to equal JSON with other spacing
        conn.execute(sa.text("""UPDATE audit_log SET detail = '{"i": 1, "x": [1.5, null]}' WHERE id = 2"""))
    with session_scope(db_url) as session:
        assert audit.verify(session) == 2
    engine.dispose()


def test_a_deleted_middle_row_is_detected(db_url: str, capsys) -> None:
    _fill(db_url, 6)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE id = 3"))
    engine.dispose()
    with session_scope(db_url) as session:
        verdict = audit.verify_chain(session)
    assert verdict.broken_id == 4 and verdict.rows == 2 and "deleted" in verdict.reason
    code, out = verify_cli(db_url, capsys)
    assert code == 1 and "row 4" in out


def test_concurrent_appends_make_one_chain(db_url: str) -> None:
    _fill(db_url, 1)
    engine = make_engine(db_url)  # the project's engine: on SQLite it can begin IMMEDIATE
    errors: list[BaseException] = []

    def append(i: int) -> None:
        try:
            for j in range(3):
                audit.record_apart(engine, "test.concurrent", f"writer {i}", {"j": j})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()
    assert not errors, errors[:1]
    rows = events(db_url)
    assert [r.id for r in rows] == list(range(1, 62))
    assert all(r.prev_hash == p.hash for p, r in itertools.pairwise(rows))
    with session_scope(db_url) as session:
        assert audit.verify(session) is None
