"""The errors the challenge server shows to people: each message is safe to show as it is.

No message carries a held test label (ARCHITECTURE.md invariant 1): they quote only what the uploader
sent, public test ids, class names, counts and times.
"""
from __future__ import annotations

from datetime import datetime


class LeaderboardError(Exception):
    """Anything the challenge server refuses; the CLI and the site show the message."""


class ValidationError(LeaderboardError, ValueError):
    """An uploaded file is malformed; the message names the line (or JSON item) and the problem."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


class AuthError(LeaderboardError, PermissionError):
    """The token is unknown, wrong or revoked: one message for all three, so none can be told apart."""

    MESSAGE = "invalid or revoked token"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class QuotaExceeded(LeaderboardError):
    """The team has used its submissions for the rolling window; `next_slot_at` is when one frees
    (None: the challenge takes none at all)."""

    def __init__(self, message: str, next_slot_at: datetime | None):
        super().__init__(message)
        self.next_slot_at = next_slot_at


class ChallengeError(LeaderboardError, ValueError):
    """A challenge, team or submission named by the caller does not exist or cannot be created."""


class ScoringError(LeaderboardError):
    """Scoring failed inside the server; the message is generic on purpose (labels stay out of it)."""


class Throttled(LeaderboardError):
    """Too many failures from this client, on this token or by this team: refused without being tried.

    `retry_at` is when the key frees, by the database's clock; `retry_after_s` is the wait in whole
    seconds, what an HTTP server would send as Retry-After with a 429.
    """

    def __init__(self, message: str, retry_at: datetime, retry_after_s: int):
        super().__init__(message)
        self.retry_at = retry_at
        self.retry_after_s = retry_after_s


class ServerBusy(LeaderboardError):
    """The server is validating as many uploads as it allows at once: the upload was not looked at, so it
    is not the uploader's fault and costs nothing; `retry_after_s` is a fair wait before trying again."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s
