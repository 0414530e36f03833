"""Engine and sessions from one URL; schema brought up to date by Alembic."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_URL = "sqlite:///convbench.db"
URL_ENV = "CONVBENCH_DB"
MIGRATIONS = Path(__file__).with_name("migrations")


def database_url(url: str | None = None) -> str:
    """The URL given, else $CONVBENCH_DB, else a SQLite file in the working directory."""
    return url or os.environ.get(URL_ENV) or DEFAULT_URL


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the site read while a campaign writes; the busy timeout queues writers instead of failing them.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str | None = None) -> Engine:
    url = database_url(url)
    if url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling would defer BEGIN; let SQLAlchemy emit it
        # so `BEGIN IMMEDIATE` (the quota lock) is possible.
        event.listen(engine, "connect", lambda conn, _r: setattr(conn, "isolation_level", None))
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN")))
        return engine
    return create_engine(url, pool_pre_ping=True)


@lru_cache(maxsize=16)
def cached_engine(url: str) -> Engine:
    return make_engine(url)


def make_sessionmaker(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(cached_engine(database_url(url)), expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = make_sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def create_schema(url: str | None = None) -> str:
    """Migrate the database at `url` to the newest schema; returns the URL used."""
    from alembic import command

    url = database_url(url)
    command.upgrade(alembic_config(url), "head")
    return url
