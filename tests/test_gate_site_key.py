"""The gate believes a visitor's address only from the site, proven by the key they share.

Under Compose every published connection reaches the gate from the Docker network's gateway; if a header
alone named the client, a team could renew its throttle key with every request.
"""
from __future__ import annotations

import asyncio

from gate.limits import SiteClient

KEY = "k" * 43


def client_seen(headers: dict[str, str], key: str | None = KEY) -> tuple[str, int]:
    seen: dict[str, tuple[str, int]] = {}

    async def app(scope, receive, send) -> None:
        seen["client"] = scope["client"]

    scope = {"type": "http", "client": ("172.18.0.1", 5555),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(SiteClient(app, key)(scope, None, None))
    return seen["client"]


def test_the_site_with_its_key_names_its_visitor() -> None:
    assert client_seen({"X-Convbench-Site-Key": KEY, "X-Convbench-Client": "203.0.113.7"}) == ("203.0.113.7", 0)


def test_without_the_key_the_named_client_is_ignored() -> None:
    peer = ("172.18.0.1", 5555)
    assert client_seen({"X-Convbench-Client": "203.0.113.7"}) == peer
    assert client_seen({"X-Convbench-Site-Key": KEY[:-1] + "x", "X-Convbench-Client": "203.0.113.7"}) == peer
    assert client_seen({"X-Forwarded-For": "203.0.113.7"}) == peer
    # A gate with no key configured trusts nobody's header, not even an empty key.
    assert client_seen({"X-Convbench-Site-Key": "", "X-Convbench-Client": "203.0.113.7"}, key="") == peer


def test_a_named_client_must_be_an_address() -> None:
    # Not an address: a team holding a leaked key still could not pick arbitrary throttle keys.
    assert client_seen({"X-Convbench-Site-Key": KEY, "X-Convbench-Client": "team:1"}) == ("172.18.0.1", 5555)
