"""The submission gate served for real (uvicorn on 127.0.0.1, a free port) in a thread of the test process."""
from __future__ import annotations

import os
import secrets
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from conftest import free_port

from gate.app import create_app
from leaderboard.gate_client import SITE_KEY_ENV


@contextmanager
def serving(url: str, **options: Any) -> Iterator[str]:
    """The gate on database `url` (create_app's `options`), until the block ends; yields its base URL.

    Like `convbench site`, the test process and its gate share a fresh site key, so a client named by
    gate_client (as the site names its visitors) is believed."""
    port = free_port()
    saved = os.environ.get(SITE_KEY_ENV)
    os.environ[SITE_KEY_ENV] = secrets.token_urlsafe(32)
    config = uvicorn.Config(create_app(url, **options), host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, proxy_headers=True, forwarded_allow_ips="127.0.0.1")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"gate-{port}", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the gate did not start on port {port}") from None
            time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(15)
        if saved is None:
            os.environ.pop(SITE_KEY_ENV, None)
        else:
            os.environ[SITE_KEY_ENV] = saved
