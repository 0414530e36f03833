"""The commands that exist only as `convbench` commands: `results` and `site`.

Their parsers import argparse alone; SQLAlchemy, pandas and Streamlit come with running them.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DB_HELP = "database URL (default: $CONVBENCH_DB, else sqlite:///convbench.db)"
SITE_FLAGS = ("--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer")


def add_results_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default=None, metavar="NAME", help="only the runs of this suite (its `name`)")
    p.add_argument("--db", default=None, metavar="URL", help=DB_HELP)
    p.add_argument("--format", choices=("table", "csv"), default="table",
                   help="a table to read (default), or CSV with every column, raw values")


def results(args: argparse.Namespace) -> int:
    from db.engine import exit_status, open_database

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


def add_site_arguments(p: argparse.ArgumentParser) -> None:
    flags = " ".join(SITE_FLAGS)
    p.epilog = (f"runs:\n  <venv>/bin/streamlit run leaderboard/app.py --server.port PORT \\\n    {flags}\n"
                "with the database's URL in $CONVBENCH_DB, never on the command line.\n\n" + (p.epilog or ""))
    p.add_argument("--db", default=None, metavar="URL", help=DB_HELP)
    p.add_argument("--port", type=int, default=8501, help="port to serve on (--server.port; default %(default)s)")
    p.add_argument("--address", default=None,
                   help="address to listen on (--server.address; default: Streamlit's, every interface)")


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
    command = streamlit_command(args.port, args.address)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec: Streamlit gets this process's id and signals, and --db's password leaves the command line.
    os.execve(command[0], command, {**os.environ, URL_ENV: url})
    return 0  # not reached
