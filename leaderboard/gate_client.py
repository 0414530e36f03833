"""A client of the submission gate (gate/), on the standard library alone: what `convbench submit --server` and
the site's Submit page use.

Every refusal comes back as the leaderboard.errors class the gate raised, with the gate's one-line message, so a
caller handles a remote submission exactly as a local one.
"""
from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from leaderboard.errors import (
    AuthError,
    ChallengeError,
    LeaderboardError,
    QuotaExceeded,
    ScoringError,
    ServerBusy,
    Throttled,
    ValidationError,
)

GATE_URL_ENV = "CONVBENCH_GATE_URL"  # where the site finds the gate
# A secret the site and the gate share: with it the site names its visitor, whom the gate throttles (gate.limits).
SITE_KEY_ENV = "CONVBENCH_SITE_KEY"
TIMEOUT_S = 300.0  # a 50 MB file scored on a busy server takes seconds, not minutes
USER_AGENT = "convbench-gate-client/1"


def _when(text: object) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None


def _wait(body: dict[str, Any]) -> int:
    value = body.get("retry_after_s")
    return int(value) if isinstance(value, (int, float)) else 1


# The gate's error body names the class ("kind"); each entry rebuilds it from the body and the message.
REBUILD: dict[str, Any] = {
    "AuthError": lambda body, message: AuthError(),
    "Throttled": lambda body, message: Throttled(message, _when(body.get("retry_at")) or datetime.now(UTC),
                                                 _wait(body)),
    "QuotaExceeded": lambda body, message: QuotaExceeded(message, _when(body.get("next_slot_at"))),
    "ValidationError": lambda body, message: ValidationError(message, body.get("line")),
    "ChallengeError": lambda body, message: ChallengeError(message),
    "ServerBusy": lambda body, message: ServerBusy(message, _wait(body)),
    "ScoringError": lambda body, message: ScoringError(message),
}
# Without a kind (a proxy's own page, an old gate): by the status.
BY_STATUS = {401: "AuthError", 404: "ChallengeError", 413: "ValidationError", 422: "ValidationError",
             429: "Throttled", 503: "ServerBusy"}


def error_from(status: int, raw: bytes, headers: Any = None) -> LeaderboardError:
    """The leaderboard error an HTTP refusal stands for."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    message = body.get("detail") if isinstance(body.get("detail"), str) else f"the gate answered HTTP {status}"
    if "retry_after_s" not in body and headers is not None and str(headers.get("Retry-After", "")).isdigit():
        body["retry_after_s"] = int(headers["Retry-After"])
    kind = body.get("kind") if body.get("kind") in REBUILD else BY_STATUS.get(status)
    error = REBUILD[kind](body, message) if kind else LeaderboardError(message)
    if isinstance(error, ValidationError):
        error.errors = [e for e in body.get("errors", []) if isinstance(e, str)] or [message]  # type: ignore[attr-defined]
    return error


def _request(server: str, path: str, token: str | None = None, data: bytes | None = None,
             content_type: str | None = None, client: str | None = None, method: str | None = None) -> Any:
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if content_type:
        headers["Content-Type"] = content_type
    site_key = os.environ.get(SITE_KEY_ENV, "")
    if client and site_key:  # the site names its visitor, proven by the key it shares with the gate (gate.limits)
        headers["X-Convbench-Site-Key"], headers["X-Convbench-Client"] = site_key, client
    request = urllib.request.Request(server.rstrip("/") + path, data=data, headers=headers,
                                     method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        raise error_from(exc.code, exc.read(), exc.headers) from None
    except urllib.error.URLError as exc:
        raise LeaderboardError(f"cannot reach the gate at {server}: {exc.reason}") from None
    except (TimeoutError, ConnectionError) as exc:
        raise LeaderboardError(f"the gate at {server} did not answer: {exc}") from None


def multipart(fields: dict[str, str], filename: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body (RFC 7578) with the form fields and one file part named `file`."""
    boundary = "convbench-" + secrets.token_hex(16)
    quoted = filename.replace("\\", "_").replace('"', "_").replace("\r", "_").replace("\n", "_")
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n".encode())
    return b"".join(parts) + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def submit(server: str, token: str, slug: str, data: bytes, filename: str, name: str = "", description: str = "",
           code_url: str = "", client: str | None = None, run_id: str = "") -> dict[str, Any]:
    """Upload a prediction file; the gate's answer: scores with CIs, rank, quota left, next slot. `run_id`: an
    official team's benchmark run that made the file."""
    fields = {"name": name, "description": description, "code_url": code_url} | ({"run_id": run_id} if run_id else {})
    body, content_type = multipart(fields, filename, data)
    return _request(server, f"/v1/challenges/{urllib.parse.quote(slug, safe='')}/submissions", token, body,
                    content_type, client)


def me(server: str, token: str, client: str | None = None) -> dict[str, Any]:
    """{"team", "official"} for a valid token."""
    return _request(server, "/v1/me", token, client=client)


def quota(server: str, token: str, slug: str, client: str | None = None) -> dict[str, Any]:
    """{"used", "left", "quota", "window_days", "next_slot_at", ...} of the token's team on a challenge."""
    return _request(server, f"/v1/challenges/{urllib.parse.quote(slug, safe='')}/quota", token, client=client)


def submission(server: str, token: str, submission_id: int, client: str | None = None) -> dict[str, Any]:
    return _request(server, f"/v1/submissions/{int(submission_id)}", token, client=client)


def challenges(server: str) -> list[dict[str, Any]]:
    return _request(server, "/v1/challenges")


def select_final(server: str, token: str, slug: str, submission_ids: list[int],
                 client: str | None = None) -> dict[str, Any]:
    """Mark the team's finals: {"submission_ids", "final_count", "deadline", ...}."""
    body = json.dumps({"submission_ids": [int(i) for i in submission_ids]}).encode()
    return _request(server, f"/v1/challenges/{urllib.parse.quote(slug, safe='')}/final", token, body,
                    "application/json", client, method="PUT")


def standings(server: str, slug: str) -> dict[str, Any]:
    """The board with rank intervals (leaderboard.standings): the public part's until the close."""
    return _request(server, f"/v1/challenges/{urllib.parse.quote(slug, safe='')}/standings")


def compare(server: str, slug: str, a: int, b: int) -> dict[str, Any]:
    """Is submission `a` better than `b`: the paired difference, its CI, bootstrap and McNemar p-values."""
    return _request(server, f"/v1/challenges/{urllib.parse.quote(slug, safe='')}/compare?a={int(a)}&b={int(b)}")
