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
