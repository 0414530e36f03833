"""What the gate refuses before a request reaches the app: bodies over the cap, and floods from one address.

Both are pure ASGI middleware, so they act on the raw stream: a body is refused by its Content-Length before a
byte of it is read, and a chunked body (no length) is counted as it arrives and cut off past the cap, so no
request makes the server hold more than the cap (invariant 9).
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from leaderboard.gate_client import SITE_KEY_ENV
from leaderboard.submissions import MAX_BYTES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A multipart body is the file plus its part headers, the boundaries and the short form fields (entry name,
# a description of at most 2,000 characters, a code URL): 64 KiB covers them with room to spare.
FORM_OVERHEAD = 64 * 1024
BODY_CAP = MAX_BYTES + FORM_OVERHEAD


def body_cap(max_upload: int) -> int:
    return max_upload + FORM_OVERHEAD


async def send_error(send: Send, status: int, kind: str, detail: str, headers: dict[str, str] | None = None) -> None:
    """A JSON error the way the app's own handlers write one ({"kind", "detail"}), sent from middleware."""
    body = json.dumps({"kind": kind, "detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           (b"connection", b"close")] + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(HTTPException):
    """Raised from inside the body stream: an HTTPException, so that the form parser passes it on unchanged
    (FastAPI turns any other error while parsing into a 400) and the app answers 413."""

    def __init__(self, cap: int) -> None:
        super().__init__(413, f"request body over {cap:,} bytes (a prediction file may have {cap - FORM_OVERHEAD:,})")


class BodyCap:
    """Refuses a request body over `cap` bytes with 413: by its Content-Length at once, or while it streams."""

    def __init__(self, app: ASGIApp, cap: int = BODY_CAP) -> None:
        self.app, self.cap = app, cap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        try:
            declared = int(length) if length is not None else None
        except ValueError:
            declared = None  # h11 refuses a malformed length before the app is called
        if declared is not None and declared > self.cap:
            # Answered before anything is read; the server closes the connection on the unread body.
            await send_error(send, 413, "ValidationError", str(BodyTooLarge(self.cap).detail))
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.cap:
                    raise BodyTooLarge(self.cap)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge as exc:  # read outside the app's handlers (middleware of its own, a plain route)
            if not started:
                await send_error(send, 413, "ValidationError", str(exc.detail))


class RateLimit:
    """A token bucket per client address: `burst` requests at once, then `rate` a second.

    In this process's memory, not the database: its only job is to shed a flood before each request costs a
    database round trip, and what matters for security (wrong tokens, rejected files, the quota) is counted
    in the database already (leaderboard.throttle), across processes and replicas. So a restart or a second
    replica granting a fresh bucket gives a flood nothing that the database throttles would let through.

    The address is the connection's peer, which uvicorn replaces with the X-Forwarded-For client only when
    the peer is a trusted proxy (--forwarded-allow-ips, $FORWARDED_ALLOW_IPS): a client cannot renew its key
    by writing the header itself. /healthz is exempt (a health check must never be shed).
    """

    MAX_KEYS = 10_000  # addresses remembered; past it, the full buckets (idle clients) are forgotten

    def __init__(self, app: ASGIApp, rate: float = 2.0, burst: int = 40,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.rate, self.burst, self.clock = app, rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, when counted)
        self._lock = threading.Lock()

    def wait_s(self, address: str) -> float:
        """Take one token for `address`; 0 if it had one, else the seconds until it will."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(address, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if tokens >= 1.0:
                self._buckets[address] = (tokens - 1.0, now)
                if len(self._buckets) > self.MAX_KEYS:
                    self._forget_idle(now)
                return 0.0
            self._buckets[address] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        full = [a for a, (tokens, then) in self._buckets.items()
                if tokens + (now - then) * self.rate >= self.burst]
        for address in full:
            del self._buckets[address]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == "/healthz":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = self.wait_s(client[0] if client else "unknown")
        if wait > 0:
            seconds = max(1, int(wait + 0.999))
            await send_error(send, 429, "Throttled", f"too many requests from this address; try again in {seconds} s",
                             {"Retry-After": str(seconds)})
            return
        await self.app(scope, receive, send)


SITE_KEY_HEADER = b"x-convbench-site-key"
SITE_CLIENT_HEADER = b"x-convbench-client"


class SiteClient:
    """The site's visitors by their own addresses: a request that carries the site's key names its client.

    Why a shared key and not a trusted proxy address: under Compose every connection published from outside
    reaches the gate from the Docker network's gateway, a private address, so trusting a network range for
    X-Forwarded-For would let any outside team write its own address and renew its throttle key. The key
    ($CONVBENCH_SITE_KEY, held by the gate and the site only) is compared in constant time; without it, or with
    a wrong one, the headers are ignored and the peer address stands. Outermost, so the rate limit and the
    throttles both see the visitor.
    """

    def __init__(self, app: ASGIApp, key: str | None = None) -> None:
        self.app = app
        self.key = (key if key is not None else os.environ.get(SITE_KEY_ENV, "")).encode()

    def visitor(self, scope: Scope) -> str | None:
        if not self.key:
            return None
        headers = dict(scope.get("headers") or [])
        given, client = headers.get(SITE_KEY_HEADER), headers.get(SITE_CLIENT_HEADER)
        if given is None or client is None or not hmac.compare_digest(given, self.key):
            return None
        try:
            return str(ipaddress.ip_address(client.decode("ascii").strip()))
        except (UnicodeDecodeError, ValueError):
            return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            address = self.visitor(scope)
            if address is not None:
                scope = dict(scope, client=(address, 0))
        await self.app(scope, receive, send)
