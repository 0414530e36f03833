"""Shared fixtures: databases (SQLite and the local PostgreSQL), one Ray head for the session."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("CONVBENCH_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def _pg_reachable() -> bool:
    try:
        with sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3}).connect():
            return True
    except sa.exc.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_server() -> str:
    if not _pg_reachable():
        message = f"PostgreSQL is not reachable at {PG_ADMIN_URL}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must start it: see .ci/run)")
        pytest.skip(message)
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"convbench_t_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    yield url
    from db.engine import cached_engine

    cached_engine.cache_clear()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'convbench.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str:
    """The same test on both databases, each fresh and migrated to the newest schema."""
    from db.engine import create_schema

    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    create_schema(url)
    return url


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead:
    def __init__(self, address: str, dashboard: str, env: dict[str, str]):
        self.address, self.dashboard, self.env = address, dashboard, env


def project_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess: this venv's tools first on PATH, quiet warnings."""
    import sys
    from pathlib import Path

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    # Ray 2.60's `ray start --head` turns token authentication on; clients then read ~/.ray/auth_token.
    env["RAY_AUTH_MODE"] = "token"
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.update(extra)
    return env


def _wait_for_job_server(head: RayHead, timeout_s: float = 300) -> None:
    """`ray start` returns before the head's job agent is up; a submission then gets a 500."""
    import subprocess
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        probe = subprocess.run(["ray", "job", "submit", "--address", head.dashboard, "--", "python", "-c", "pass"],
                               env=head.env, capture_output=True, text=True, timeout=120, check=False)
        if probe.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Ray job server at {head.dashboard} did not come up:\n{probe.stderr[-2000:]}")
        time.sleep(2)


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    """One Ray head on 127.0.0.1 for the whole session: starting Ray costs seconds, so tests share it."""
    import subprocess

    port, dash = free_port(), free_port()
    env = project_env()
    # Every port of its own: Ray's fixed defaults (the dashboard agent's 52365, ...) would collide with any
    # other Ray on the machine, and a head whose agent cannot bind takes no job submissions.
    own_ports = [f"--{name}={free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                         "runtime-env-agent-port", "metrics-export-port")]
    # `ray start --head` refuses to start without a token; a fresh machine has none (this makes it only then).
    subprocess.run(["ray", "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=120)
    subprocess.run(["ray", "start", "--head", f"--port={port}", "--num-cpus=2", "--node-ip-address=127.0.0.1",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--disable-usage-stats", *own_ports],
                   env=env, check=True, capture_output=True, timeout=120)
    head = RayHead(f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}", env)
    _wait_for_job_server(head)
    yield head
    subprocess.run(["ray", "stop", "--force"], env=env, capture_output=True, timeout=120, check=False)
