"""The audit trail: every upload's outcome, every failed token and every admin action, as a hash chain.

A row's `hash` is the SHA-256 of its content (id, time, actor, action, challenge, subject, detail, in one
canonical JSON text) followed by `prev_hash`, the hash of the row before it; the first row's `prev_hash`
is GENESIS. Editing a row changes its hash, which no longer matches what the row says or what the next
row quotes; deleting a row leaves the next one quoting a hash that is not its predecessor's. `verify`
recomputes the chain and names the first row where it breaks. (Deleting the *last* rows leaves a shorter
chain that still verifies: keep the head's hash elsewhere, e.g. printed by `convbench admin audit verify`,
to catch that.)

Appends are serialised, so concurrent writers extend one chain and never fork it: the id is the last
id + 1, taken under a lock (`pg_advisory_xact_lock` on PostgreSQL, the write lock on SQLite), and the
primary key refuses a second row at the same position should the lock ever be missing.

Nothing secret goes in: no token, no held label. A detail holds what the host needs to reconstruct an
event (a file's SHA-256, a refusal's reason as shown to the uploader, old and new scores).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Connection, Engine, MetaData, Table, Text, cast, func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from db.engine import make_sessionmaker
from db.schema import AuditEvent
from leaderboard.throttle import server_now

GENESIS = "0" * 64
LOCK_KEY = 0x636F6E76  # pg_advisory_xact_lock's key for the chain's head ("conv")
VERIFY_BATCH = 5000


def _stamp(at: datetime) -> str:
    """A time as hashed: UTC, microseconds (SQLite hands back naive UTC; PostgreSQL the session's zone)."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds") + "Z"  # isoformat: 4x cheaper than strftime, per row of verify


# One encoder for every row: json.dumps with options builds a new one per call, a third of verify's time.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def plain_json(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    """`detail` as the database hands it back: JSON types only (a datetime or a Path becomes its text)."""
    return json.loads(json.dumps(dict(detail or {}), default=str, allow_nan=False))


def canonical_detail(detail: Mapping[str, Any] | None) -> str:
    """The text a detail is stored as and hashed as: compact JSON with sorted keys."""
    return _CANONICAL(plain_json(detail))


def row_hash(id: int, at: datetime, actor: str, action: str, challenge_id: int | None, subject: str,
             detail: str, prev_hash: str) -> str:
    """The hash of a row: its fields, the detail as its stored text (canonical_detail), then the previous hash."""
    content = _CANONICAL([id, _stamp(at), actor, action, challenge_id, subject, detail])
    return hashlib.sha256(content.encode("utf-8", "surrogatepass") + prev_hash.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Event:
    action: str
    actor: str
    detail: Mapping[str, Any] | None = None
    challenge_id: int | None = None
    subject: str = ""


def chained(events: Iterable[Event], first_id: int, prev_hash: str, at: datetime) -> Iterator[dict[str, Any]]:
    """Rows for `events`, numbered from `first_id` and chained after `prev_hash` (record's work; a bench's fill)."""
    for offset, event in enumerate(events):
        row_id, detail = first_id + offset, canonical_detail(event.detail)
        actor, action, subject = event.actor[:128], event.action[:64], event.subject[:256]
        digest = row_hash(row_id, at, actor, action, event.challenge_id, subject, detail, prev_hash)
        yield {"id": row_id, "at": at, "actor": actor, "action": action, "challenge_id": event.challenge_id,
               "subject": subject, "detail": detail, "prev_hash": prev_hash, "hash": digest}
        prev_hash = digest


def _lock(session: Session) -> None:
    """Take the chain's lock for the rest of the session's transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    elif not session.in_transaction():
        # SQLite: the write lock from the transaction's start, so no other writer reads the same head. A
        # transaction already under way must have written before it records (its write lock is then held).
        session.connection(execution_options={"sqlite_begin": "BEGIN IMMEDIATE"})


def record(session: Session, action: str, actor: str, detail: Mapping[str, Any] | None = None,
           challenge_id: int | None = None, subject: str = "") -> int:
    """Append one event in the session's transaction (committed with it); returns its id."""
    return record_many(session, [Event(action, actor, detail, challenge_id, subject)])


def record_many(session: Session, events: list[Event]) -> int:
    """Append events in order in the session's transaction; returns the last one's id."""
    if not events:
        raise ValueError("no events to record")
    _lock(session)
    last = session.execute(select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).first()
    first_id, prev = (last.id + 1, last.hash) if last is not None else (1, GENESIS)
    rows = list(chained(events, first_id, prev, server_now(session.connection())))
    session.execute(insert(STORED), rows)
    return rows[-1]["id"]


def record_apart(bind: Engine | Connection | str | None, action: str, actor: str, detail: Mapping[str, Any] | None = None,
                 challenge_id: int | None = None, subject: str = "") -> int:
    """Append one event in a transaction of its own, committed now: for a refusal, whose caller's transaction
    is rolled back or holds nothing worth keeping."""
    maker = sessionmaker(bind.engine) if isinstance(bind, Engine | Connection) else make_sessionmaker(bind)
    with maker() as session:
        event_id = record(session, action, actor, detail, challenge_id, subject)
        session.commit()
    return event_id


# The table as stored: `detail` as its text. Written so, the text is the canonical one that was hashed (the
# JSON column would write its own serialisation); read so (CAST, as psycopg2 would parse a json column),
# verify hashes it without parsing 100,000 details. PostgreSQL's json type keeps its input text as it is.
STORED = Table("audit_log", MetaData(), *(Column(c.name, Text() if c.name == "detail" else c.type)
                                           for c in AuditEvent.__table__.columns))


def stored_rows(session: Session, after: int = 0) -> Iterable[tuple[Any, ...]]:
    """The rows in id order as hashed (detail as its stored text), streamed."""
    columns = [cast(c, Text).label("detail") if c.name == "detail" else c for c in STORED.columns]
    return session.execute(select(*columns).where(STORED.c.id > after).order_by(STORED.c.id)
                           .execution_options(yield_per=VERIFY_BATCH))


# --- verifying ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    rows: int  # rows checked (up to the break)
    broken_id: int | None  # the first row whose hash or link does not hold; None: the chain is whole
    reason: str = ""
    head: str = GENESIS  # the last row's hash: keep it elsewhere to notice rows cut off the end


def verify_chain(session: Session) -> Verdict:
    """Recompute the chain in id order, streaming; the first broken row and why, or None with the head's hash."""
    prev, expected_id, rows = GENESIS, 1, 0
    # Unpacked, not row.attribute: the per-row cost is most of verify's time.
    for id_, at, actor, action, challenge_id, subject, detail, prev_hash, stored_hash in stored_rows(session):
        if prev_hash != prev:
            missing = "a row before it was deleted or edited" if id_ != expected_id else "its link was edited"
            return Verdict(rows, id_, f"prev_hash does not match the row before ({missing})", prev)
        if id_ != expected_id:
            return Verdict(rows, id_, f"id {id_} follows {expected_id - 1}: rows were renumbered", prev)
        if row_hash(id_, at, actor, action, challenge_id, subject, detail, prev_hash) != stored_hash:
            return Verdict(rows, id_, "the row's content does not match its hash (edited)", prev)
        prev, expected_id, rows = stored_hash, id_ + 1, rows + 1
    return Verdict(rows, None, "", prev)


def verify(session: Session) -> int | None:
    """The id of the first broken row, or None when the whole chain holds."""
    return verify_chain(session).broken_id


def count(session: Session) -> int:
    return session.scalar(select(func.count(AuditEvent.id))) or 0
