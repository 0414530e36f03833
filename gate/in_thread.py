"""The gate served in a thread of the calling process (uvicorn on 127.0.0.1, a free port): for the benchmark and
the tests, which time or drive it from the same process. A deployment runs `convbench gate` instead."""
from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def serving(url: str, **options: Any) -> Iterator[str]:
    """The gate on database `url` (gate.app.create_app's `options`) until the block ends; yields its base URL once
    /healthz answers. X-Forwarded-For is believed from 127.0.0.1 only, as `convbench gate` does by default."""
    import uvicorn

    from gate.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
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
