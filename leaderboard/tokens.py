"""Teams and their API tokens.

A token is 32 random bytes, shown once at creation and stored only as its SHA-256: a slow
password hash buys nothing for a secret with 256 bits of entropy. Unknown, wrong and revoked
tokens all raise the same AuthError, and a throttle slows a caller who keeps failing.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.schema import Team
from leaderboard.errors import AuthError, ChallengeError

TOKEN_BYTES = 32


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_team(session: Session, name: str, official: bool = False) -> str:
    """Create a team; returns its token, which is not stored and cannot be shown again."""
    name = name.strip()
    if not name or len(name) > 128:
        raise ChallengeError("a team name needs 1-128 characters")
    if session.scalar(select(Team.id).where(Team.name == name)) is not None:
        raise ChallengeError(f"team {name!r} exists")
    # A fixed prefix: a token that began with "-" would read as an option on a command line.
    token = "cbt_" + secrets.token_urlsafe(TOKEN_BYTES)
    session.add(Team(name=name, token_hash=hash_token(token), official=official))
    session.flush()
    return token


def revoke(session: Session, team_name: str) -> Team:
    """Revoke a team's token: it authenticates no more. The team's submissions stay."""
    team = session.scalar(select(Team).where(Team.name == team_name))
    if team is None:
        raise ChallengeError(f"no team {team_name!r}")
    team.revoked = True
    session.flush()
    return team


class Throttle:
    """Slows a caller after failed attempts: a wait of base * 2**(failures - 1) seconds, capped.

    Keyed by what the caller passes (a browser session, an address). Clock and sleep are
    injectable so tests run without waiting. Thread-safe; the wait happens outside the lock.
    """

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0, forget_after_s: float = 3600.0,
                 max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.base_s, self.cap_s, self.forget_after_s, self.max_keys = base_s, cap_s, forget_after_s, max_keys
        self.clock, self.sleep = clock, sleep
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # key -> (count, last failure time)
        self._lock = threading.Lock()

    def delay(self, key: str) -> float:
        """Seconds this key must still wait before its next attempt."""
        with self._lock:
            count, last = self._failures.get(key, (0, 0.0))
            if count == 0:
                return 0.0
            elapsed = self.clock() - last
            if elapsed > self.forget_after_s:
                del self._failures[key]
                return 0.0
            return max(0.0, min(self.cap_s, self.base_s * 2 ** (count - 1)) - elapsed)

    def wait(self, key: str) -> float:
        seconds = self.delay(key)
        if seconds > 0:
            self.sleep(seconds)
        return seconds

    def failed(self, key: str) -> None:
        with self._lock:
            count, _ = self._failures.pop(key, (0, 0.0))
            self._failures[key] = (min(count + 1, 64), self.clock())  # 64: 2**63 already exceeds any cap
            while len(self._failures) > self.max_keys:  # bounded memory: the oldest keys go first
                self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


THROTTLE = Throttle()


def authenticate(session: Session, token: str, throttle_key: str | None = None,
                 throttle: Throttle | None = None) -> Team:
    """The team holding `token`; AuthError ("invalid or revoked token") otherwise.

    With a `throttle_key`, a caller who failed before waits first (see Throttle).
    """
    throttle = throttle or THROTTLE
    if throttle_key is not None:
        throttle.wait(throttle_key)
    team = None
    if isinstance(token, str) and token:
        digest = hash_token(token)
        candidate = session.scalar(select(Team).where(Team.token_hash == digest))
        if candidate is not None and hmac.compare_digest(candidate.token_hash, digest) and not candidate.revoked:
            team = candidate
    if team is None:
        if throttle_key is not None:
            throttle.failed(throttle_key)
        raise AuthError()
    if throttle_key is not None:
        throttle.succeeded(throttle_key)
    return team


def list_teams(session: Session) -> list[Team]:
    return list(session.scalars(select(Team).order_by(Team.id)))
