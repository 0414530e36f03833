"""The commands that exist only as `convbench` commands: `results` (and `results export`) and `site`.

Their parsers import argparse alone; SQLAlchemy, pandas and Streamlit come with running them.
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

DB_HELP = "database URL (default: $CONVBENCH_DB, else sqlite:///convbench.db)"
SITE_FLAGS = ("--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer",
              "--runner.postScriptGC", "false")  # why: .streamlit/config.toml


def add_results_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default=None, metavar="NAME", help="only the runs of this suite (its `name`)")
    p.add_argument("--db", default=None, metavar="URL", help=DB_HELP)
    p.add_argument("--format", choices=("table", "csv"), default="table",
                   help="a table to read (default), or CSV with every column, raw values")
    actions = p.add_subparsers(dest="action", metavar="export", title="subcommands")
    export = actions.add_parser(
        "export", help="write <suite>-<date>.csv (timm's columns, 95%% CIs over seeds) and a chart of top-1 error "
                       "against GFLOPs (.png), from the database alone",
        description="One row per architecture and dataset over the suite's seeds: errors with Student's t 95% "
                    "interval across seeds, parameters, GMACs, image size, train img/s, wall s, seed count, commit; "
                    "and a PNG of top-1 error against GFLOPs with the intervals as error bars.",
        epilog="example:\n  convbench results export --db sqlite:///convbench.db --suite cpu --out results/")
    # SUPPRESS: given before `export` (`results --db URL export`), the value is kept, not reset to None.
    export.add_argument("--suite", default=argparse.SUPPRESS, metavar="NAME", help="the suite (its `name`); required")
    export.add_argument("--db", default=argparse.SUPPRESS, metavar="URL", help=DB_HELP)
    export.add_argument("--out", type=Path, default=Path("results"), metavar="DIR",
                        help="folder for the CSV and the PNG (default: results/)")


def results(args: argparse.Namespace) -> int:
    from db.engine import exit_status, open_database

    if getattr(args, "action", None) == "export":
        return results_export(args)

    def command() -> int:
        url = open_database(args.db)  # only reads: a mistyped SQLite path is an error, not a new empty file
        from leaderboard.queries import format_runs, runs_frame

        frame = runs_frame(url, suite=args.suite, limit=None)
        if args.format == "csv":
            sys.stdout.write(frame.to_csv(index=False))
        else:
            print(format_runs(frame))
        return 0

    return exit_status(command, args.db)


def results_export(args: argparse.Namespace) -> int:
    from db.engine import exit_status, open_database

    def command() -> int:
        if not args.suite:
            raise UsageError("results export needs --suite NAME: the files are named after the suite")
        url = open_database(args.db)
        from leaderboard.results_export import export, markdown

        done = export(url, args.suite, args.out)
        print(markdown(done.table))
        print(f"wrote {done.csv} ({len(done.table)} rows from {done.runs} runs) and {done.chart}")
        return 0

    from leaderboard.results_export import ExportError

    return exit_status(command, args.db, usage_errors=(UsageError,), failures=(ExportError, OSError))


class UsageError(ValueError):
    """A command line that cannot run as given."""


def add_site_arguments(p: argparse.ArgumentParser) -> None:
    flags = " ".join(SITE_FLAGS)
    p.epilog = (f"runs:\n  <venv>/bin/streamlit run leaderboard/app.py --server.port PORT \\\n    {flags}\n"
                "with the database's URL in $CONVBENCH_DB, never on the command line.\n\n" + (p.epilog or ""))
    p.add_argument("--db", default=None, metavar="URL", help=DB_HELP)
    p.add_argument("--port", type=int, default=8501, help="port to serve on (--server.port; default %(default)s)")
    p.add_argument("--address", default=None,
                   help="address to listen on (--server.address; default: Streamlit's, every interface)")
    p.add_argument("--gate", default=None, metavar="URL",
                   help="the submission gate the Submit page posts to (default: $CONVBENCH_GATE_URL, else a gate "
                        "started here on a free local port, on the same database)")


def streamlit_command(port: int, address: str | None) -> list[str]:
    """The Streamlit of this interpreter's environment, running the site with convbench's flags."""
    import importlib.util

    beside = Path(sys.executable).parent / "streamlit"
    program = [str(beside)] if os.access(beside, os.X_OK) else [sys.executable, "-m", "streamlit"]
    spec = importlib.util.find_spec("leaderboard")  # its folder, without running the package's imports
    app = Path(next(iter(spec.submodule_search_locations))) / "app.py"
    where = ["--server.address", address] if address else []
    return [*program, "run", str(app), *SITE_FLAGS, "--server.port", str(port), *where]


def site(args: argparse.Namespace) -> int:
    from db.engine import URL_ENV, DatabaseError, open_database

    try:
        url = open_database(args.db)  # a mistyped path or a server that is away: one line now, not a broken page
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from leaderboard.gate_client import GATE_URL_ENV, SITE_KEY_ENV

    env = dict(os.environ)
    gate = args.gate or os.environ.get(GATE_URL_ENV)
    if not gate:
        # A key for this site and its own gate only, so the gate believes the visitor addresses it names.
        env[SITE_KEY_ENV] = secrets.token_urlsafe(32)
        gate = local_gate(url, env)
    if gate is None:
        return 1
    command = streamlit_command(args.port, args.address)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec: Streamlit gets this process's id and signals, and --db's password leaves the command line.
    os.execve(command[0], command, {**env, URL_ENV: url, GATE_URL_ENV: gate})
    return 0  # not reached


def _die_with_parent() -> None:
    """In the gate's child process: SIGTERM when its parent ends. The parent execs Streamlit, which keeps its
    process (exec is no death), so the gate lives exactly as long as the site."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def local_gate(url: str, env: dict[str, str], timeout_s: float = 60.0) -> str | None:
    """Start `python -m gate` on a free port of 127.0.0.1 on the site's database; its URL once it answers, else
    None after saying why. One `convbench site` is then a whole working site, uploads included."""
    import socket
    import subprocess
    import time
    import urllib.request

    from db.engine import URL_ENV

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    gate = subprocess.Popen([sys.executable, "-m", "gate", "--host", "127.0.0.1", "--port", str(port)],
                            env={**env, URL_ENV: url}, preexec_fn=_die_with_parent)  # noqa: PLW1509
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if gate.poll() is not None:
            print(f"error: the local submission gate exited with status {gate.returncode}", file=sys.stderr)
            return None
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                print(f"submission gate on {base} (its API docs: {base}/docs)", flush=True)
                return base
        except OSError:
            time.sleep(0.2)
    gate.terminate()
    print(f"error: the local submission gate did not answer within {timeout_s:g} s", file=sys.stderr)
    return None
