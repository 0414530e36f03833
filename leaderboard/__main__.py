"""`python -m leaderboard COMMAND`: the challenge server's command line.

Each command group lives in its own module and adds its parser here (`admin` today; a `serve`
for the site can join the same way).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from db.engine import DatabaseError, database_url, describe_error, safe_url
from leaderboard import admin
from leaderboard.errors import LeaderboardError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m leaderboard",
        description="convbench's challenge server: teams upload test-set predictions, scored against labels "
                    "only the server holds, at most a few scored submissions per team per rolling window.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    admin.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if prepare := getattr(args, "prepare", None):
            prepare(args)
        return args.func(args)
    except LeaderboardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:  # past the checks: the database failed mid-way; one line, no SQL, no password
        url = database_url(getattr(args, "db", None))
        print(f"error: database {safe_url(url)}: {describe_error(exc, url)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
