"""`convbench`: one command with a subcommand for everything a user does (issue #13, item 3).

Every command and subcommand explains itself with a description and an example; help answers at
Python's own start-up speed because nothing heavy is imported to print it (it was torch: 27 s on a
loaded machine); a mistyped name gets "did you mean"; the commands run end to end, and the
`python -m` forms keep working. Timings are ratios against `python -c pass` measured alongside.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from conftest import free_port, project_env
from sqlalchemy import insert

from convbench.cli import COMMANDS, parser_for

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "suites" / "tiny.toml"
SCRIPT = Path(sys.executable).parent / "convbench"
MODULE = [sys.executable, "-m", "convbench"]
HEAVY = ("torch", "torchvision", "ray", "pandas", "streamlit", "cv2")



def convbench(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
              launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(launcher or MODULE), *args], cwd=ROOT, env=env or project_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, timeout=120, check=False)
    took = time.perf_counter() - start
    assert done.returncode == 0, done.stderr.decode()
    return took


def min_of(n: int, command: list[str], baseline: list[str]) -> tuple[float, float]:
    """(min of `n` runs of `command`, min of `n` runs of `baseline`), interleaved so load hits both alike."""
    timed, base = [], []
    for _ in range(n):
        base.append(seconds(baseline))
        timed.append(seconds(command))
    return min(timed), min(base)


PYTHON_PASS = [sys.executable, "-c", "pass"]


def command_paths() -> list[tuple[str, ...]]:
    """Every registered command, and under each group every subcommand: ("run",), ("team", "create"), ..."""
    def below(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> list[tuple[str, ...]]:
        found = [path]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += below(sub, (*path, name))
        return found

    return [p for name, c in COMMANDS.items()
            for p in (below(parser_for(name), (name,)) if c.build else [(name,)])]


# --- help --------------------------------------------------------------------------------------------

HELP_ALL = """
import contextlib, io, json, sys
from convbench.cli import main
out = {}
for path in json.loads(sys.argv[1]):
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            code = main([*path, "--help"])
        except SystemExit as exc:
            code = exc.code
    out[" ".join(path)] = [code, text.getvalue()]
print(json.dumps(out))
"""


def test_every_command_and_subcommand_has_help_with_a_description_and_an_example():
    paths = command_paths()
    assert {("challenge", "create"), ("challenge", "list"), ("team", "create"), ("team", "list"),
            ("team", "revoke"), ("db", "upgrade"), ("db", "check"), ("db", "grant"), ("admin", "rescore"),
            ("admin", "create-challenge")} <= set(paths)
    from leaderboard.admin import CHALLENGE, SUBCOMMANDS, TEAM

    assert {("challenge", "kit"), ("challenge", "close"), ("admin", "audit", "verify"), ("results", "export")} <= set(paths)
    # Every command the registries declare was reached: the groups' own commands, plus `results export`,
    # `admin audit verify|list`, `db upgrade|check|grant`, and `phase add|list` under `challenge` and `admin`.
    assert len(paths) == len(COMMANDS) + len(CHALLENGE) + len(TEAM) + len(SUBCOMMANDS) + 1 + 2 + 3 + 2 + 2, paths
    done = subprocess.run([sys.executable, "-c", HELP_ALL, json.dumps(paths)], cwd=ROOT, env=project_env(),
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    helps = json.loads(done.stdout)
    for name, (code, text) in helps.items():
        assert code == 0, (name, text)
        blocks = text.split("\n\n")
        assert blocks[0].startswith(f"usage: convbench {name}"), (name, blocks[0])
        description = " ".join(blocks[1].split())
        assert description and not description.startswith(("options:", "positional")), (name, text)
        if name in COMMANDS and COMMANDS[name].build:  # a passed-through command keeps its module's description
            assert description.startswith(COMMANDS[name].description), (name, description)
        assert f"\nexample:\n  convbench {name}" in text, (name, text)  # an example under its own name
        assert "python -m workers" not in text, name  # a passed-through help is renamed
    # The top-level help lists every command with its description, and imports none of them (below).
    top = convbench("--help")
    assert top.returncode == 0
    flat = " ".join(top.stdout.split())
    for name, command in COMMANDS.items():
        assert f"{name} {command.description}" in flat, name
    assert "examples:" in top.stdout


def test_the_site_command_shows_the_flags_it_passes_to_streamlit():
    out = convbench("site", "--help").stdout
    for flag in ("--server.headless true", "--browser.gatherUsageStats false", "--client.toolbarMode viewer",
                 "--runner.postScriptGC false", "--server.port PORT", "--port PORT", "--db URL", "$CONVBENCH_DB"):
        assert flag in out, flag


def test_convbench_help_is_as_fast_as_python_itself():
    # Was the orchestrator's parser with torch behind it: ~100x `python -c pass`.
    assert SCRIPT.is_file(), "reinstall: .venv/bin/pip install -e . --no-deps"
    took, base = min_of(3, [str(SCRIPT), "--help"], PYTHON_PASS)
    assert took <= 5 * base, (took, base)


LIGHT_PARSER = """
import json, sys
from convbench.cli import COMMANDS, load, parser_for
name = sys.argv[1]
if COMMANDS[name].build:
    parser_for(name)
else:  # it parses its own arguments: its module is what `--help` imports
    load(COMMANDS[name].run)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))))
"""


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_commands_parser_imports_nothing_heavy(name):
    done = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{LIGHT_PARSER}", name], cwd=ROOT,
                          env=project_env(), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [], f"{name}'s parser imports {done.stdout}"


# Help that costs the import of SQLAlchemy (db.engine; 0.4-0.8 s here: the db package's __init__ imports it
# and the schema) or numpy (workers.check_data): bound by that import, nothing more. Every other command: at
# most 8x `python -c pass` (measured 1.6-3x; torch was ~100x, and 1 s on the loaded machine is ~4x).
BOUND_BY_IMPORT = {"challenge": "leaderboard.admin", "team": "leaderboard.admin", "submit": "leaderboard.admin",
                   "admin": "leaderboard.admin", "db": "db.__main__", "check-data": "workers.check_data"}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_commands_help_answers_at_once(name):
    if name in BOUND_BY_IMPORT:
        reference = [sys.executable, "-c", f"import {BOUND_BY_IMPORT[name]}"]
        took, base = min_of(3, [*MODULE, name, "--help"], reference)
        assert took <= 1.5 * base, (name, took, base)
    else:
        took, base = min_of(3, [*MODULE, name, "--help"], PYTHON_PASS)
        assert took <= 8 * base, (name, took, base)


@pytest.mark.parametrize("module", ["orchestrator", "workers.zoo", "bench"])
def test_the_python_m_forms_answer_help_without_torch(module):
    script = (f"import runpy, sys\nsys.argv = [{module!r}, '--help']\n"
              f"try:\n    runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
              "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
              f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\nassert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=project_env(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert "usage: " in done.stdout


# --- names -------------------------------------------------------------------------------------------

def test_a_mistyped_command_gets_did_you_mean_and_status_2():
    out = convbench("rnu", "--suite", "x.toml")
    assert out.returncode == 2 and "did you mean 'run'" in out.stderr, out.stderr
    out = convbench("team", "creat", "x")
    assert out.returncode == 2 and "did you mean 'create'" in out.stderr, out.stderr
    out = convbench("db", "upgarde")
    assert out.returncode == 2 and "did you mean 'upgrade'" in out.stderr, out.stderr
    out = convbench("xyzzy")
    assert out.returncode == 2 and "invalid choice: 'xyzzy'" in out.stderr and "did you mean" not in out.stderr
    assert convbench().returncode == 2


# --- running -----------------------------------------------------------------------------------------

@pytest.fixture
def migrated(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    out = convbench("db", "upgrade", "--db", url)
    assert out.returncode == 0 and "at the newest schema" in out.stdout, out.stderr
    return url


def test_plan_end_to_end_matches_python_m_orchestrator(migrated):
    out = convbench("plan", "--suite", str(TINY), "--db", migrated)
    assert out.returncode == 0, out.stderr
    assert "2 of 2 jobs left to run" in out.stdout and "resnet18" in out.stdout and "alexnet" in out.stdout
    old = subprocess.run([sys.executable, "-m", "orchestrator", "plan", "--suite", str(TINY), "--db", migrated],
                         cwd=ROOT, env=project_env(), capture_output=True, text=True, timeout=300, check=False)
    assert old.returncode == 0 and old.stdout == out.stdout
    missing = convbench("plan", "--suite", str(TINY), "--db", f"{migrated}.typo")
    assert missing.returncode == 2 and missing.stderr.startswith("error: no database at"), missing.stderr


def test_results_prints_the_finished_runs_of_a_suite(migrated):
    from bench.site_fixture import run_rows
    from db.engine import make_engine
    from db.schema import Run

    rows = run_rows(40, np.random.default_rng(0))
    engine = make_engine(migrated)
    with engine.begin() as conn:
        conn.execute(insert(Run.__table__), rows)
    engine.dispose()
    done = sorted(r["job_id"] for r in rows if r["state"] == "done" and r["suite"] == "suite-3")
    assert done
    csv = convbench("results", "--suite", "suite-3", "--format", "csv", "--db", migrated)
    assert csv.returncode == 0, csv.stderr
    lines = csv.stdout.strip().splitlines()
    assert "job_id" in lines[0].split(",") and sorted(line.split(",")[-1] for line in lines[1:]) == done, lines
    table = convbench("results", "--db", migrated)
    assert table.returncode == 0 and "top-5 err" in table.stdout and "architecture" in table.stdout
    assert len(table.stdout.strip().splitlines()) == 1 + sum(r["state"] == "done" for r in rows)
    empty = convbench("results", "--suite", "no-such-suite", "--db", migrated)
    assert empty.returncode == 0 and "(no finished runs)" in empty.stdout
    missing = convbench("results", "--db", f"{migrated}.typo")
    assert missing.returncode == 2 and missing.stderr.startswith("error: no database at"), missing.stderr


def test_challenge_team_and_submit_are_the_admin_commands(migrated):
    created = convbench("challenge", "create", "--db", migrated, "--slug", "tiny", "--dataset", "synthetic",
                        "--option", "num_classes=3", "--option", "image_size=8", "--option", "train_per_class=1",
                        "--option", "val_per_class=1", "--option", "test_per_class=2")
    assert created.returncode == 0 and "challenge 'tiny'" in created.stdout, created.stderr
    listed = convbench("challenge", "list", "--db", migrated)
    assert listed.returncode == 0 and "tiny" in listed.stdout
    team = convbench("team", "create", "ants", "--db", migrated)
    assert team.returncode == 0, team.stderr
    token = team.stdout.strip().splitlines()[-1]
    assert "ants" in convbench("team", "list", "--db", migrated).stdout
    assert "ants" in convbench("admin", "list-teams", "--db", migrated).stdout  # the old names, one group
    predictions = Path(migrated.removeprefix("sqlite:///")).with_name("p.csv")
    predictions.write_text("image_id,pred_1\ntest_000000,0\n")  # too few rows: rejected, one line, no quota
    rejected = convbench("submit", "--db", migrated, "--challenge", "tiny", str(predictions),
                         env=project_env(CONVBENCH_TOKEN=token))  # the token from the environment, never argv
    assert rejected.returncode == 1 and rejected.stderr.startswith("error: "), rejected.stdout + rejected.stderr
    revoked = convbench("team", "revoke", "ants", "--db", migrated)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout


def test_zoo_prints_the_table():
    out = convbench("zoo", "--only", "alexnet,resnet18", "--classes", "10")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["arch", "family", "year"] and len(lines) == 3
    assert lines[1].split()[0] == "alexnet" and lines[2].split()[0] == "resnet18"
    assert convbench("zoo", "--only", "resnet9000").returncode == 2


def test_check_data_is_passed_through(tmp_path):
    out = convbench("check-data", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and out.stderr.startswith("error: "), out.stdout + out.stderr


# The interpreter's command line and $CONVBENCH_DB, recorded at every start (the re-exec included).
RECORDER = """
import json, os, sys
with open(os.environ["CONVBENCH_TEST_RECORD"], "a") as f:
    f.write(json.dumps({"argv": sys.orig_argv, "db": os.environ.get("CONVBENCH_DB")}) + "\\n")
"""


@pytest.mark.parametrize("launcher", ["script", "module", "orchestrator"])
def test_run_and_plan_reexecute_without_the_password_under_every_launcher(launcher, tmp_path):
    password = "Pw-7c1e9b/x"
    url = f"postgresql+psycopg2://u:{quote(password, safe='')}@127.0.0.1:{free_port()}/db"
    (tmp_path / "sitecustomize.py").write_text(RECORDER)
    record = tmp_path / "record.jsonl"
    env = project_env(PYTHONPATH=str(tmp_path), CONVBENCH_TEST_RECORD=str(record))
    env.pop("CONVBENCH_DB", None)
    prefix = {"script": [str(SCRIPT)], "module": MODULE, "orchestrator": [sys.executable, "-m", "orchestrator"]}
    args = ["plan", "--suite", str(TINY), "--db", url]
    out = convbench(*args, env=env, launcher=prefix[launcher])
    # The re-executed plan finds no server there: one line, without the password, status 2.
    assert out.returncode == 2 and out.stderr.startswith("error: cannot open the database"), out.stderr
    assert password not in out.stderr and quote(password, safe="") not in out.stderr
    starts = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(starts) == 2, starts  # the command, then the same command once more
    first, again = starts
    assert first["argv"][-len(args):] == args and first["db"] is None
    expected = {"script": [sys.executable, str(SCRIPT)], "module": [sys.executable, "-m", "convbench"],
                "orchestrator": [sys.executable, "-m", "orchestrator"]}[launcher]
    assert again["argv"] == [*expected, "plan", "--suite", str(TINY)], again
    assert again["db"] == url


def test_site_starts_streamlit_with_the_flags_and_the_url_in_its_environment(migrated):
    port = free_port()
    proc = subprocess.Popen([*MODULE, "site", "--db", migrated, "--port", str(port), "--address", "127.0.0.1"],
                            cwd=ROOT, env=project_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as response:
                    health = response.read().decode()
                    break
            except OSError:
                time.sleep(0.5)
        assert health == "ok", (proc.poll(), health)
        # exec'd: the same process is Streamlit now, with convbench's flags and the URL in its environment.
        argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[:-1]
        words = [w.decode() for w in argv]
        assert "streamlit" in " ".join(words[:2]) and words[words.index("run") + 1].endswith("leaderboard/app.py")
        for flag, value in (("--server.headless", "true"), ("--browser.gatherUsageStats", "false"),
                            ("--client.toolbarMode", "viewer"), ("--runner.postScriptGC", "false"),
                            ("--server.port", str(port))):
            assert words[words.index(flag) + 1] == value, (flag, words)
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        assert f"CONVBENCH_DB={migrated}".encode() in environ
        assert not any(migrated in word for word in words)
        # With no gate given, a local one was started for the Submit page, and it answers.
        (gate,) = [w.decode().partition("=")[2] for w in environ if w.startswith(b"CONVBENCH_GATE_URL=")]
        assert gate.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{gate}/healthz", timeout=5) as response:
            assert json.loads(response.read()) == {"ok": True}
        # It lives as long as the site: Streamlit ends, the gate follows.
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{gate}/healthz", timeout=1).close()
                time.sleep(0.2)
            except OSError:
                break
        else:
            pytest.fail("the local gate outlived the site")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    missing = convbench("site", "--db", f"{migrated}.typo", "--port", str(port))
    assert missing.returncode == 2 and missing.stderr.startswith("error: no database at"), missing.stderr
