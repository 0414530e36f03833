"""The submission gate served for real (uvicorn on 127.0.0.1, a free port) in a thread of the test process."""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gate import in_thread
from leaderboard.gate_client import SITE_KEY_ENV


@contextmanager
def serving(url: str, **options: Any) -> Iterator[str]:
    """The gate on database `url` (create_app's `options`), until the block ends; yields its base URL.

    Like `convbench site`, the test process and its gate share a fresh site key, so a client named by
    gate_client (as the site names its visitors) is believed."""
    saved = os.environ.get(SITE_KEY_ENV)
    os.environ[SITE_KEY_ENV] = secrets.token_urlsafe(32)
    try:
        with in_thread.serving(url, **options) as base:
            yield base
    finally:
        if saved is None:
            os.environ.pop(SITE_KEY_ENV, None)
        else:
            os.environ[SITE_KEY_ENV] = saved
