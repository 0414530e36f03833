"""`python -m leaderboard COMMAND`: the challenge server's command line (also `convbench challenge|team|submit|admin`).

Each command group lives in its own module and adds its parser here (`admin` today; the site is
`convbench site`).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from leaderboard import admin


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m leaderboard",
        description="convbench's challenge server: teams upload test-set predictions, scored against labels "
                    "only the server holds, at most a few scored submissions per team per rolling window.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    admin.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return admin.run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
