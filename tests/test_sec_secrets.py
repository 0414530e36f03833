"""No command, log, error or database row shows a database password; a bad --db is one clear line, status 2.

Issue #12 (the password reached `ray job submit` logs; bad URLs printed tracebacks; `plan` created an
empty SQLite file for a mistyped path) and #18 (the printed streamlit hint did not run as printed).
Every URL here holds a unique password; every output, log file and row is searched for it.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import sqlalchemy as sa
from conftest import free_port, project_env
from sqlalchemy.engine import make_url

from db.engine import DatabaseError, check_url, has_password, open_database, safe_url, scrub

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "suites" / "tiny.toml"
# '@' and '/' must be percent-encoded in a URL: the search covers the encoded spellings too.
PASSWORD = f"Pw@{uuid.uuid4().hex[:12]}/x"


def spellings(secret: str) -> list[str]:
    return sorted({secret, quote(secret, safe=""), quote_plus(secret)})


def assert_hidden(text: str, secret: str = PASSWORD, where: str = "output") -> None:
    for spelling in spellings(secret):
        assert spelling not in text, f"the password ({spelling}) is in the {where}:\n{text[-3000:]}"


def with_password(url: str, user: str = "someone") -> str:
    return make_url(url).set(username=user, password=PASSWORD).render_as_string(hide_password=False)


def cli(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """A project command as a user runs it from the project folder, stdout and stderr kept."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env or project_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)


# --- rendering ------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    f"postgresql+psycopg2://u:{quote(PASSWORD, safe='')}@db.example:5432/convbench",
    f"postgresql+psycopg2://u@db.example/convbench?password={quote(PASSWORD, safe='')}&sslmode=require",
    f"postgresql://u:{PASSWORD}@host:notaport/db",   # SQLAlchemy cannot parse it: masked as text
    f"postgresql:/u:{PASSWORD}@host/db",
])
def test_safe_url_hides_every_password(url):
    shown = safe_url(url)
    assert_hidden(shown)
    assert "***" in shown and "u" in shown
    assert has_password(url)
    assert scrub(f"failed on {url} (password {PASSWORD})", url).count("***") >= 2
    assert_hidden(scrub(f"failed on {url} (password {PASSWORD})", url))


def test_safe_url_leaves_urls_without_a_password_as_they_are():
    for url in ("sqlite:///convbench.db", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"):
        assert safe_url(url) == url
        assert not has_password(url)


# --- bad URLs: one line, status 2, nothing created ------------------------------------------------

BAD = {
    "malformed": (f"postgresql+psycopg2://u:{quote(PASSWORD, safe='')}@host:notaport/db",
                  "malformed database URL", "port is not a number"),
    "unreachable": (f"postgresql+psycopg2://u:{quote(PASSWORD, safe='')}@127.0.0.1:{free_port()}/db",
                    "cannot open the database", "Connection refused"),
    "no driver": (f"mysql://u:{quote(PASSWORD, safe='')}@127.0.0.1/db",
                  "the driver for mysql:// is not installed", "No module named"),
    "unknown kind": (f"postgres://u:{quote(PASSWORD, safe='')}@127.0.0.1/db",
                     "unknown kind of database 'postgres'", "postgresql+psycopg2://"),
}
PLAN = ("-m", "orchestrator", "plan", "--suite", str(TINY))
READ_ONLY = [PLAN, ("-m", "db", "check"), ("-m", "leaderboard", "admin", "list-teams"),
             ("-m", "leaderboard", "admin", "list-submissions")]
WRITING = [("-m", "db", "upgrade"), ("-m", "db", "grant"), ("-m", "leaderboard", "admin", "create-team", "t")]


def assert_one_line_error(out: subprocess.CompletedProcess, *named: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    assert_hidden(out.stdout + out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for words in named:
        assert words in lines[0], lines[0]


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_url_is_one_line_naming_the_problem(kind):
    url, *named = BAD[kind]
    for command in READ_ONLY + WRITING:
        assert_one_line_error(cli(*command, "--db", url), *named, "***")
    # From the environment as from --db.
    assert_one_line_error(cli(*PLAN, env=project_env(CONVBENCH_DB=url)), *named)


def test_bench_refuses_a_bad_pg_url_in_one_line_and_its_help_shows_no_password():
    url = BAD["malformed"][0]
    out = cli("-m", "bench", "--pg-url", url)
    assert out.returncode == 2
    assert_hidden(out.stdout + out.stderr)
    assert "--pg-url: malformed database URL" in out.stderr.strip().splitlines()[-1]
    helped = cli("-m", "bench", "--help", env=project_env(CONVBENCH_DB=url))
    assert helped.returncode == 0 and "--pg-url" in helped.stdout
    assert_hidden(helped.stdout + helped.stderr)


def test_bench_saves_its_command_line_without_the_password():
    from bench.__main__ import public_argv

    saved = " ".join(public_argv(["--pg-url", BAD["unreachable"][0], f"--pg-url={BAD['unreachable'][0]}"]))
    assert_hidden(saved)
    assert saved.count("u:***@127.0.0.1") == 2


def test_a_password_given_with_db_is_taken_off_the_command_line():
    from orchestrator.cli import password_off_the_command_line

    url = BAD["unreachable"][0]
    for argv in (["run", "--suite", "s.toml", "--db", url, "--num-cpus", "2"], ["run", f"--db={url}", "--suite", "s.toml"]):
        kept = password_off_the_command_line(argv, url)
        assert sorted(kept) == sorted(a for a in argv if a not in ("--db", url, f"--db={url}")), kept
    assert password_off_the_command_line(["run", "--db", "sqlite:///x.db"], "sqlite:///x.db") is None


def test_read_only_commands_never_create_a_sqlite_file(tmp_path):
    missing = tmp_path / "typo" / "convbench.db"
    url = f"sqlite:///{missing}"
    for command in READ_ONLY + [("-m", "leaderboard", "admin", "revoke-token", "t")]:
        assert_one_line_error(cli(*command, "--db", url), f"no database at {missing}", "db upgrade")
    assert not missing.exists() and not missing.parent.exists()
    # The hint runs as printed, and then the plan works.
    hint = cli(*PLAN, "--db", url).stderr.split("`")[1]
    assert subprocess.run(shlex.split(hint), cwd=ROOT, env=project_env(), capture_output=True, check=False).returncode == 0
    planned = cli(*PLAN, "--db", url)
    assert planned.returncode == 0 and "2 of 2 jobs left to run" in planned.stdout


def test_a_missing_driver_is_refused_before_anything_is_imported_from_it():
    with pytest.raises(DatabaseError, match=r"^cannot use postgresql://u:\*\*\*@h/db: the driver"):
        check_url(f"postgresql://u:{quote(PASSWORD, safe='')}@h/db")  # SQLAlchemy 2.1's default: psycopg 3
    with pytest.raises(DatabaseError, match="cannot open the database") as err:
        open_database(BAD["unreachable"][0])
    assert_hidden(str(err.value))


# --- a real server, a role with a password --------------------------------------------------------

@pytest.fixture
def secret_url(pg_server: str) -> Iterator[str]:
    """A fresh database owned by a fresh role whose password is PASSWORD (trust auth accepts it: the point
    is that the URL holds it); both dropped afterwards."""
    name = f"convbench_sec_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {name} LOGIN PASSWORD %s", (PASSWORD,))
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" OWNER {name}')
    yield with_password(make_url(pg_server).set(database=name).render_as_string(hide_password=False), user=name)
    from db.engine import cached_engine

    cached_engine.cache_clear()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f"DROP ROLE IF EXISTS {name}")
    admin.dispose()


def assert_no_row_holds_it(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                rows = "\n".join(map(str, conn.execute(table.select())))
                assert_hidden(rows, where=f"table {table.name}")
    finally:
        engine.dispose()


def test_every_database_command_on_a_url_with_a_password(secret_url):
    admin = ("-m", "leaderboard", "admin")
    by_option = [
        ("-m", "db", "upgrade"), ("-m", "db", "check"), PLAN,
        (*admin, "create-challenge", "--slug", "sec", "--dataset", "synthetic", "--option", "num_classes=3",
         "--option", "image_size=8", "--option", "train_per_class=1", "--option", "val_per_class=1",
         "--option", "test_per_class=2"),
        (*admin, "create-team", "sec team"), (*admin, "list-challenges"), (*admin, "list-teams"),
        (*admin, "list-submissions"),
    ]
    by_environment = [("-m", "db", "upgrade"), PLAN, (*admin, "create-team", "env team"), (*admin, "list-teams")]
    outputs = [cli(*command, "--db", secret_url) for command in by_option]
    outputs += [cli(*command, env=project_env(CONVBENCH_DB=secret_url)) for command in by_environment]
    for out in outputs:
        assert out.returncode == 0, out.args[1:4] + [out.stdout + out.stderr]
        assert_hidden(out.stdout + out.stderr)
    assert "sec team" in outputs[6].stdout and "env team" in outputs[-1].stdout
    assert_no_row_holds_it(secret_url)


# --- a run on Ray, and the hint it prints ---------------------------------------------------------

def hint_command(stdout: str) -> list[str]:
    """The command the run prints for opening the leaderboard (the indented line after 'Open the leaderboard')."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "Open the leaderboard" in line)
    return shlex.split(next(line for line in lines[start + 1:] if line.startswith("  ")))


def assert_runs_from_the_project_folder(words: list[str]) -> None:
    """The program resolves for a new user: from the project folder, without the venv on PATH."""
    program = words[0]
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    found = (ROOT / program) if os.sep in program else shutil.which(program, path=path)
    assert found and os.access(found, os.X_OK), f"{program!r} does not run from {ROOT} on a new user's PATH"
    assert (ROOT / words[words.index("run") + 1]).is_file()
    version = subprocess.run([str(found), "version"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert version.returncode == 0 and "Streamlit" in version.stdout, version.stderr


def files_under(*folders: Path) -> Iterator[Path]:
    for folder in folders:
        if folder.is_dir():
            yield from (p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.slow
def test_a_run_shows_no_password_and_prints_a_hint_that_runs(ray_head, secret_url, tmp_path):
    storage = tmp_path / "runs"
    args = ["-m", "orchestrator", "run", "--suite", str(TINY), "--storage", str(storage),
            "--address", ray_head.address]
    first = cli(*args, "--db", secret_url, env=ray_head.env, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert_hidden(first.stdout + first.stderr)
    assert "CONVBENCH_DB set to" in first.stdout and "password is not printed" in first.stdout
    words = hint_command(first.stdout)
    assert not any(w.startswith("CONVBENCH_DB=") for w in words)  # the user sets it: no `***` to paste
    assert_runs_from_the_project_folder(words)
    # Ray shows a driver's command line as its job's entrypoint: --db's password was taken off it.
    jobs = subprocess.run(["ray", "list", "jobs", "--address", ray_head.dashboard, "--detail", "--format", "json"],
                          cwd=ROOT, env=ray_head.env, capture_output=True, text=True, timeout=120, check=False)
    assert jobs.returncode == 0 and "orchestrator run" in jobs.stdout, jobs.stderr
    assert_hidden(jobs.stdout, where="Ray's job list")

    # The URL from the environment: the password is still nowhere.
    again = cli(*args, env={**ray_head.env, "CONVBENCH_DB": secret_url})
    assert again.returncode == 0 and "2 already done, 0 to run" in again.stdout, again.stdout + again.stderr
    assert_hidden(again.stdout + again.stderr)
    assert_runs_from_the_project_folder(hint_command(again.stdout))

    assert_no_row_holds_it(secret_url)
    ray_logs = Path("/tmp/ray/session_latest/logs")
    for path in files_under(storage, ray_logs):
        data = path.read_bytes()
        for spelling in spellings(PASSWORD):
            assert spelling.encode() not in data, f"the password is in {path}"

    # A URL without a password is printed, and the whole hint pastes: the results come back from disk here.
    sqlite = f"sqlite:///{tmp_path / 'plain.db'}"
    plain = cli(*args, "--db", sqlite, env=ray_head.env)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    words = hint_command(plain.stdout)
    assert words[0] == f"CONVBENCH_DB={sqlite}"
    assert_runs_from_the_project_folder(words[1:])
