"""Failed-attempt throttles kept in the database and timed by the database's clock.

A throttle counts failures per (scope, key) in the `throttles` table, so every server process and
replica sees one count, and nothing a client renews for free (a browser session, a process, its own
clock) resets it. Keys are what an attacker cannot cheaply renew: a client address (an IPv6 client by
its /64, which one subscriber holds whole), a token's hash prefix, a team.

Past `free` failures in a window a key is refused without its attempt being tried: first for
`base_s`, doubling with each further failure up to `cap_s`, and never beyond the window's end, when
the count starts over. A refusal raises Throttled with the moment the key frees: the server answers
at once (HTTP 429 + Retry-After in spirit) instead of sleeping while it holds a worker.

Concurrent attempts of one key cannot all slip through its last free slot. Two ways, by the cost of
the attempt:

- `guarded` (a token lookup, milliseconds): the check, the attempt and the count run in one
  transaction that holds the keys' locks (PostgreSQL advisory locks, SQLite's write lock); attempts of
  a key queue, and a success writes nothing.
- `charged` (validating an upload, up to seconds): the attempt is counted as a failure in advance in a
  short locked transaction and refunded if it succeeds; no lock is held while it runs.

Locks are taken in one global order (their ids sorted), and a connection of the throttle's own pool is
used, so a request that holds a connection of the main pool never waits for one in the same pool.
"""
from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from sqlalchemy import Connection, Engine, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite

from db.engine import make_engine
from db.schema import Throttle as ThrottleRow
from leaderboard.errors import Throttled

KEY_CHARS = 128  # the key column's width
TOKEN_PREFIX_HEX = 16  # 64 bits: keys one token (or a one-in-2**64 twin), yet is no verifier of it


@dataclass(frozen=True)
class Policy:
    scope: str  # the `throttles.scope` value, at most 32 characters
    free: int  # failures a key may have in a window before it is refused
    window_s: float  # a key's count starts over this long after its first failure
    base_s: float  # the first refusal lasts this long ...
    cap_s: float  # ... and each further failure doubles it, up to this
    what: str  # how the message names the failures


# A wrong token: five free tries, then 2 s, 4 s, ... 5 min between tries; about 25 tries an hour per key.
AUTH = Policy("auth", free=5, window_s=3600.0, base_s=2.0, cap_s=300.0, what="failed attempts")
# Validation costs the server time: 20 rejected files an hour per team and per address, then none until
# the hour is over (base and cap at the window: the wait always runs to the window's end).
REJECTED_UPLOADS = Policy("rejected-upload", free=20, window_s=3600.0, base_s=3600.0, cap_s=3600.0,
                          what="rejected uploads")


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every time here is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def server_now(conn: Connection) -> datetime:
    """The database server's clock, as an aware UTC datetime; never the calling process's clock.

    PostgreSQL's clock_timestamp() is the time of the call, not of the transaction's start: inside a
    transaction that waited for a lock, the time after the wait. SQLite's 'now' is UTC text; with %f
    it keeps milliseconds (CURRENT_TIMESTAMP has whole seconds only).
    """
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return _aware(conn.execute(text("SELECT clock_timestamp()")).scalar_one())
    if dialect == "sqlite":
        stamp = conn.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
        return datetime.fromisoformat(stamp).replace(tzinfo=UTC)
    value = conn.execute(text("SELECT CURRENT_TIMESTAMP")).scalar_one()
    return _aware(value if isinstance(value, datetime) else datetime.fromisoformat(str(value)))


# --- keys ------------------------------------------------------------------------------------------

def _fit(key: str) -> str:
    """A key that fits the column: long ones (a long host name) end in a hash, staying distinct."""
    if len(key) <= KEY_CHARS:
        return key
    return key[:KEY_CHARS - 41] + "~" + hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()


def client_key(client: str) -> str:
    """The key of a client: an IP address (IPv6 by its /64, IPv4-mapped as IPv4), else the text as given
    (the CLI's "cli:user@host")."""
    try:
        address = ipaddress.ip_address(client.strip())
    except ValueError:
        return _fit(client)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv6Address):
        return f"addr:{ipaddress.IPv6Network((address, 64), strict=False)}"
    return f"addr:{address}"


def token_key(token_hash: str) -> str:
    return f"token:{token_hash[:TOKEN_PREFIX_HEX]}"


# --- the policy's arithmetic -----------------------------------------------------------------------

def retry_at(policy: Policy, failures: int, window_start: datetime, last_failure_at: datetime,
             now: datetime) -> datetime | None:
    """When a key with this state may try again; None: it may now."""
    window_end = window_start + timedelta(seconds=policy.window_s)
    if failures < policy.free or now >= window_end:
        return None
    wait = min(policy.cap_s, policy.base_s * 2.0 ** min(failures - policy.free, 60))
    until = min(last_failure_at + timedelta(seconds=wait), window_end)
    return until if now < until else None


def _refusal(policy: Policy, until: datetime, now: datetime) -> Throttled:
    seconds = max(1, int((until - now).total_seconds() + 0.999))
    return Throttled(f"too many {policy.what}; try again in {seconds} s (at {until:%Y-%m-%d %H:%M:%S} UTC)",
                     until, seconds)


# --- connections and locks -------------------------------------------------------------------------

@lru_cache(maxsize=16)
def _pool(url: str) -> Engine:
    return make_engine(url)


def _own_engine(bind: Engine | Connection) -> Engine:
    """The throttle's own pool on the caller's database (an in-memory SQLite database has one pool only)."""
    engine = bind.engine if isinstance(bind, Connection) else bind
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        return engine
    return _pool(engine.url.render_as_string(hide_password=False))


@contextmanager
def _transaction(engine: Engine, policy: Policy, keys: Sequence[str]) -> Iterator[Connection]:
    """A transaction of its own (a failure counts even when the caller's request rolls back) that holds
    the keys' locks until it ends."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # The database's write lock from the first statement on (db.engine's begin listener reads this).
            conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
        with conn.begin():
            if conn.dialect.name == "postgresql":
                for lock in sorted({_lock_id(policy.scope, key) for key in keys}):
                    conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock})
            yield conn


def _lock_id(scope: str, key: str) -> int:
    # A 64-bit advisory lock id per (scope, key); two keys sharing one only queue together.
    digest = hashlib.blake2b(f"{scope}\0{key}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# --- the table -------------------------------------------------------------------------------------

def _rows(conn: Connection, scope: str, keys: Sequence[str]) -> dict[str, tuple[int, datetime, datetime]]:
    query = (select(ThrottleRow.key, ThrottleRow.failures, ThrottleRow.window_start, ThrottleRow.last_failure_at)
             .where(ThrottleRow.scope == scope, ThrottleRow.key.in_(keys)))
    return {r.key: (r.failures, _aware(r.window_start), _aware(r.last_failure_at)) for r in conn.execute(query)}


def _check(conn: Connection, policy: Policy, keys: Sequence[str]) -> datetime:
    """Raise Throttled if any key must still wait; else return the database's time."""
    now = server_now(conn)
    waits = [retry_at(policy, *state, now) for state in _rows(conn, policy.scope, keys).values()]
    until = max((w for w in waits if w is not None), default=None)
    if until is not None:
        raise _refusal(policy, until, now)  # nothing counted: waiting out a refusal shortens nothing
    return now


def _count(conn: Connection, policy: Policy, keys: Sequence[str], step: int) -> None:
    """Add `step` failures (-1: a refund) to every key, starting a key's window over when it has ended."""
    now, rows = server_now(conn), _rows(conn, policy.scope, keys)
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    for key in keys:
        failures, start, last = rows.get(key, (0, now, now))
        if now >= start + timedelta(seconds=policy.window_s):
            failures, start = 0, now
        failures, last = max(failures + step, 0), now if step > 0 else last
        if failures == 0:
            conn.execute(delete(ThrottleRow).where(ThrottleRow.scope == policy.scope, ThrottleRow.key == key))
            continue
        values = {"failures": failures, "window_start": start, "last_failure_at": last}
        # An upsert: a prune may have deleted an ended row since it was read.
        conn.execute(module.insert(ThrottleRow).values(scope=policy.scope, key=key, **values)
                     .on_conflict_do_update(index_elements=["scope", "key"], set_=values))


def _prune(engine: Engine, policy: Policy, batch: int = 100) -> None:
    """Keep the table bounded: rows whose window has ended hold nothing a check would use.

    Its own transaction, after the count's: it holds no advisory lock, and on PostgreSQL takes only rows
    no one holds (SKIP LOCKED), so it never waits and no one waits on it for long.
    """
    with engine.begin() as conn:
        cutoff = server_now(conn) - timedelta(seconds=policy.window_s)
        ended = (select(ThrottleRow.key).where(ThrottleRow.scope == policy.scope, ThrottleRow.window_start < cutoff)
                 .limit(batch))
        if conn.dialect.name == "postgresql":
            ended = ended.with_for_update(skip_locked=True)
        conn.execute(delete(ThrottleRow).where(ThrottleRow.scope == policy.scope, ThrottleRow.key.in_(ended)))


# --- attempts --------------------------------------------------------------------------------------

Failure = type[BaseException] | tuple[type[BaseException], ...]


@contextmanager
def guarded(bind: Engine | Connection, policy: Policy, keys: Sequence[str], failure: Failure) -> Iterator[Connection]:
    """Run a quick attempt (the `with` block) under `policy` for every key in `keys`.

    Raises Throttled before the block runs if a key must wait. The block gets the throttle's connection,
    inside the transaction that holds the keys' locks: run the attempt's queries on it, so that the check,
    the attempt and the count are one step for concurrent callers. If the block raises `failure`, every
    key counts one failure; anything else counts nothing.
    """
    engine, keys = _own_engine(bind), sorted(set(keys))
    failed: BaseException | None = None
    with _transaction(engine, policy, keys) as conn:
        _check(conn, policy, keys)
        try:
            yield conn
        except failure as exc:
            _count(conn, policy, keys, +1)
            failed = exc  # raised once the count is committed
    if failed is not None:
        _prune(engine, policy)
        raise failed


@contextmanager
def charged(bind: Engine | Connection, policy: Policy, keys: Sequence[str], failure: Failure) -> Iterator[None]:
    """Run a slow attempt (the `with` block) under `policy` for every key in `keys`, holding no lock.

    Raises Throttled before the block runs if a key must wait. Every key is charged one failure first,
    so concurrent attempts see each other; the charge stands if the block raises `failure`, and is
    refunded otherwise (success, or an error that is the server's, not the caller's).
    """
    engine, keys = _own_engine(bind), sorted(set(keys))
    with _transaction(engine, policy, keys) as conn:
        _check(conn, policy, keys)
        _count(conn, policy, keys, +1)
    try:
        yield
    except failure:
        _prune(engine, policy)
        raise
    except BaseException:
        _refund(engine, policy, keys)
        raise
    _refund(engine, policy, keys)


def _refund(engine: Engine, policy: Policy, keys: Sequence[str]) -> None:
    with _transaction(engine, policy, keys) as conn:
        _count(conn, policy, keys, -1)


# --- for operators and tests -----------------------------------------------------------------------

@dataclass(frozen=True)
class KeyState:
    failures: int
    retry_at: datetime | None  # None: the key may try now


def state(bind: Engine | Connection, policy: Policy, key: str) -> KeyState:
    """A key's count in its current window and when it frees, by the database's clock."""
    with _own_engine(bind).connect() as conn:
        now = server_now(conn)
        found = _rows(conn, policy.scope, [key]).get(key)
    if found is None or now >= found[1] + timedelta(seconds=policy.window_s):
        return KeyState(0, None)
    return KeyState(found[0], retry_at(policy, *found, now))


def clear(bind: Engine | Connection, policy: Policy, key: str) -> bool:
    """Forget a key's failures (an operator lifting a lock-out); True if it had any."""
    with _transaction(_own_engine(bind), policy, [key]) as conn:
        return conn.execute(delete(ThrottleRow).where(ThrottleRow.scope == policy.scope,
                                                      ThrottleRow.key == key)).rowcount > 0
