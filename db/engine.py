"""Engine and sessions from one URL; schema brought up to date by Alembic."""
from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_URL = "sqlite:///convbench.db"
URL_ENV = "CONVBENCH_DB"
MIGRATIONS = Path(__file__).with_name("migrations")
SUPPORTED = "sqlite:///PATH or postgresql+psycopg2://USER@HOST:PORT/DATABASE"
HIDDEN = "***"
CONNECT_TIMEOUT_S = 10  # a probe of a host that drops packets would otherwise wait for TCP's minutes

# `scheme:/[/]user:secret@` in text SQLAlchemy cannot parse. The secret runs to the *last* @ of the
# word, so a password holding a raw @ is hidden whole; only the user name is kept.
_USERINFO = re.compile(r"(?P<head>[\w+.-]+:/*[^:/@\s]*):\S*@")


class DatabaseError(Exception):
    """A database that cannot be used; the message is one line that names it with its password hidden."""


def database_url(url: str | None = None) -> str:
    """The URL given, else $CONVBENCH_DB, else a SQLite file in the working directory."""
    return url or os.environ.get(URL_ENV) or DEFAULT_URL


def _parsed(url: str | URL) -> URL | None:
    """`url` parsed, or None where its text must be masked instead: SQLAlchemy cannot parse it, or it
    holds more than one @, as a password with a raw @ does (SQLAlchemy would end the password at the first)."""
    if isinstance(url, URL):
        return url
    if str(url).count("@") > 1:
        return None
    try:
        return make_url(url)
    except Exception:  # noqa: BLE001 - whatever SQLAlchemy cannot parse is masked as text
        return None


def _mask_text(text: str) -> str:
    return _USERINFO.sub(rf"\g<head>:{HIDDEN}@", text)


def safe_url(url: str | URL | None) -> str:
    """`url` fit to print, log or store: its password, and any password in its query, shown as ***."""
    if url is None:
        return ""
    parsed = _parsed(url)
    if parsed is None:
        return _mask_text(str(url))
    query = {k: (HIDDEN if _secret_key(k) else v) for k, v in parsed.query.items()}
    rendered = parsed.set(query=query).render_as_string(hide_password=True)
    return rendered.replace("%2A%2A%2A", HIDDEN)  # the query's mask, which render percent-encodes


def has_password(url: str) -> bool:
    """Whether printing `url` as it is would show a secret."""
    parsed = _parsed(url)
    shown = parsed.render_as_string(hide_password=False) if parsed is not None else str(url)
    return safe_url(url) != shown


def _secret_key(key: str) -> bool:
    return any(word in key.lower() for word in ("password", "passwd", "secret", "token"))


def _passwords(url: str | URL) -> list[str]:
    """The secrets `url` holds, spelled as they could appear in a driver's message."""
    from urllib.parse import quote, quote_plus

    parsed = _parsed(url)
    if parsed is None:
        found = [m.group(0)[len(m.group("head")) + 1:-1] for m in _USERINFO.finditer(str(url))]
    else:
        found = [parsed.password or ""]
        for key, value in parsed.query.items():
            found += ([value] if isinstance(value, str) else list(value)) if _secret_key(key) else []
    # Shorter strings would blot ordinary words out of messages; the URL itself is masked whatever its length.
    return [v for p in found for v in {p, quote(p, safe=""), quote_plus(p)} if len(v) >= 4]


def scrub(text: str, url: str | URL | None) -> str:
    """`text` with `url` (and anything URL-shaped) shown safely and its passwords replaced by ***."""
    if url is not None:
        text = text.replace(str(url), safe_url(url))
        for secret in sorted(_passwords(url), key=len, reverse=True):
            text = text.replace(secret, HIDDEN)
    return _mask_text(text)


def describe_error(exc: BaseException, url: str | URL | None) -> str:
    """One line about a database failure: the driver's own words, without SQL, parameters or passwords."""
    # SQLAlchemy's text appends the statement and its parameters; the driver's error (`orig`) has neither.
    text = str(getattr(exc, "orig", None) or exc)
    line = next((part.strip() for part in text.splitlines() if part.strip()), exc.__class__.__name__)
    return scrub(line, url)


def exit_status(command: Callable[[], int], url: str | None, usage_errors: tuple[type[Exception], ...] = (),
                failures: tuple[type[Exception], ...] = ()) -> int:
    """Runs a command line's work under the error policy every convbench command shares.

    A refused database URL (DatabaseError) or one of `usage_errors` is one line and exit status 2; one of
    `failures`, or a database that fails mid-way, is one line and exit status 1. Never a traceback, SQL,
    statement parameters or a password.
    """
    refused: tuple[type[Exception], ...] = (DatabaseError, *usage_errors)
    try:
        return command()
    except refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except failures as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        shown = database_url(url)
        print(f"error: database {safe_url(shown)}: {describe_error(exc, shown)}", file=sys.stderr)
        return 1


def shown_path(path: str | Path) -> str:
    """`path` as a user can paste it: relative when it is under the working directory, else absolute."""
    absolute = os.path.abspath(path)  # not resolve(): a venv's python is a symlink to the base interpreter
    relative = os.path.relpath(absolute)
    if relative.startswith(os.pardir):
        return shlex.quote(absolute)
    return shlex.quote(relative if os.sep in relative else f".{os.sep}{relative}")


def python_command() -> str:
    """This interpreter, as a user can paste it in the working directory (a fresh shell lacks the venv on PATH)."""
    return shown_path(sys.executable)


def program(name: str) -> str:
    """The command that runs the tool `name` of this interpreter's environment, pasted in the working directory."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return shown_path(beside)
    return f"{python_command()} -m {name}"


def upgrade_hint(url: str) -> str:
    """The command that migrates `url`, as a user can paste it; a URL with a password goes by $CONVBENCH_DB."""
    command = f"{python_command()} -m db upgrade"
    if has_password(url):
        return f"`{command}` with ${URL_ENV} set to the database's URL"
    return f"`{command} --db {shlex.quote(url)}`"


def check_url(url: str) -> URL:
    """`url` parsed, with its database kind known and its driver installed; else DatabaseError."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError) as exc:
        why = ("cannot parse it" if isinstance(exc, ArgumentError)
               else "its port is not a number" if "int()" in str(exc) else scrub(str(exc), url))
        raise DatabaseError(f"malformed database URL {safe_url(url)} ({why}); expected {SUPPORTED}") from None
    try:
        parsed.get_dialect().import_dbapi()
    except NoSuchModuleError:
        raise DatabaseError(f"unknown kind of database {parsed.drivername!r} in {safe_url(url)}; "
                            f"expected {SUPPORTED}") from None
    except ImportError as exc:
        raise DatabaseError(f"cannot use {safe_url(url)}: the driver for {parsed.drivername}:// is not installed "
                            f"({exc}); expected {SUPPORTED}") from None
    return parsed


def _sqlite_file(parsed: URL) -> Path | None:
    """The file a SQLite URL names; None for an in-memory database or a `file:` URI."""
    database = parsed.database
    if not database or database == ":memory:" or parsed.query.get("uri") or database.startswith("file:"):
        return None
    return Path(database)


def open_database(url: str | None = None, *, create: bool = False) -> str:
    """The URL to use, once the database behind it answers; else DatabaseError in one line.

    Without `create`, a SQLite file that does not exist is an error, not a new empty database:
    a read-only command given a mistyped path must say so rather than report an empty one.
    """
    url = database_url(url)
    parsed = check_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    path = _sqlite_file(parsed) if sqlite else None
    if path is not None and not create and not path.is_file():
        raise DatabaseError(f"no database at {path} ({safe_url(url)}); run {upgrade_hint(url)} "
                            "or check the path")
    engine = make_engine(url) if sqlite else create_engine(parsed, **_probe_options(parsed))
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot open the database {safe_url(url)}: {describe_error(exc, url)}") from None
    finally:
        engine.dispose()
    return url


def _probe_options(parsed: URL) -> dict:
    if parsed.get_driver_name() in ("psycopg2", "psycopg") and "connect_timeout" not in parsed.query:
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}


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
