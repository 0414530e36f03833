"""`convbench COMMAND`: one command for everything a user does; `convbench --help` lists them.

The commands are data (COMMANDS): a name, a one-line description, an example, and where the code
that adds its arguments and the code that runs it live, as "module:function". Nothing is imported
to list them, and `convbench NAME --help` imports only NAME's parser module: argparse and at most
SQLAlchemy. torch, Ray, pandas and Streamlit are imported by the function that runs a command.
`python -m orchestrator`, `python -m leaderboard admin`, `python -m db`, `python -m bench` and
`python -m workers.zoo` build the same parsers from the same modules.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

PROG = "convbench"


class Command(NamedTuple):
    description: str  # one line: the top-level list and the command's own help
    example: str      # arguments after `convbench NAME`
    build: str | None  # "module:function(parser)" that adds the command's arguments; None: `run` parses its own
    run: str          # "module:function(args) -> exit status"; with build None, "module:function(argv)"


# `challenge kit` (issue #14) and `challenge close` (issue #15) join `challenge` once they exist.
COMMANDS: dict[str, Command] = {
    "run": Command("run every job of a suite that is not done yet, then print the leaderboard",
                   "run --suite suites/smoke.toml --db sqlite:///convbench.db",
                   "orchestrator.cli:add_run_arguments", "orchestrator.cli:run_command"),
    "plan": Command("print a suite's jobs, what each needs and which are done; runs nothing",
                    "plan --suite suites/cpu.toml --db sqlite:///convbench.db",
                    "orchestrator.cli:add_plan_arguments", "orchestrator.cli:run_command"),
    "results": Command("print the benchmark runs in the database, best first",
                       "results --suite smoke --format csv",
                       "convbench.commands:add_results_arguments", "convbench.commands:results"),
    "challenge": Command("create and list challenges: a dataset's test split, its labels held by the server",
                         "challenge create --slug synthetic-10 --dataset synthetic --option num_classes=10",
                         "leaderboard.admin:add_challenge_commands", "leaderboard.admin:run"),
    "team": Command("create, list and revoke teams and their tokens",
                    "team create 'my team'",
                    "leaderboard.admin:add_team_commands", "leaderboard.admin:run"),
    "submit": Command("submit a prediction file to a challenge as a team; prints its scores",
                      "submit --server http://127.0.0.1:8502 --challenge synthetic-10 predictions.csv --name resnet50",
                      "leaderboard.admin:add_submit_arguments", "leaderboard.admin:run"),
    "admin": Command("every challenge-server admin command, by its `python -m leaderboard admin` name",
                     "admin list-submissions --challenge synthetic-10",
                     "leaderboard.admin:add_admin_commands", "leaderboard.admin:run"),
    "db": Command("migrate a database to the newest schema, check the migrations, create the roles",
                  "db upgrade --db sqlite:///convbench.db",
                  "db.__main__:add_arguments", "db.__main__:run"),
    "bench": Command("run the performance benchmarks and print their figures",
                     "bench --quick --only scoring,leaderboard",
                     "bench.__main__:add_arguments", "bench.__main__:run"),
    "zoo": Command("list every architecture with its parameters and compute at its native resolution",
                   "zoo --classes 10 --only alexnet,resnet50",
                   "workers.zoo:add_arguments", "workers.zoo:run"),
    "gate": Command("serve the submission gate: the HTTP API that takes and scores teams' prediction files",
                    "gate --host 0.0.0.0 --port 8502",
                    "gate.__main__:add_arguments", "gate.__main__:run"),
    "site": Command("start the leaderboard site (Streamlit) on a database",
                    "site --db sqlite:///convbench.db --port 8501",
                    "convbench.commands:add_site_arguments", "convbench.commands:site"),
    "check-data": Command("decode every image of a dataset tree and list the unreadable, truncated and mislabelled",
                          "check-data /data/imagenet --kind imagenet",
                          None, "workers.check_data:main"),
}

EPILOG = f"""examples:
  {PROG} plan --suite suites/smoke.toml
  {PROG} run --suite suites/smoke.toml --db sqlite:///convbench.db
  {PROG} site --db sqlite:///convbench.db

`{PROG} COMMAND --help` describes a command. The `python -m orchestrator|leaderboard|db|bench|workers.zoo`
forms work as before."""


class Formatter(argparse.HelpFormatter):
    """Fills a paragraph to the terminal's width; keeps indented lines (examples, tables) as written; lines the
    commands' descriptions up after the longest name (argparse measures them one indent short)."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if action.help is not argparse.SUPPRESS and isinstance(action, argparse._SubParsersAction):
            longest = max(map(len, action.choices), default=0)
            self._action_max_length = max(self._action_max_length,
                                          longest + self._current_indent + self._indent_increment)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks: list[str] = []
        paragraph: list[str] = []

        def flush() -> None:
            if paragraph:
                blocks.append(textwrap.fill(" ".join(paragraph), width, initial_indent=indent,
                                            subsequent_indent=indent))
                paragraph.clear()

        for line in text.splitlines():
            if line[:1].isspace() or not line.strip():
                flush()
                blocks.append(indent + line if line.strip() else "")
            else:
                paragraph.append(line.strip())
        flush()
        return "\n".join(blocks)


class Parser(argparse.ArgumentParser):
    """argparse, with a "did you mean" for a mistyped command or choice; sub-parsers made from it are of its class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is None or value in action.choices:
            return
        names = [str(choice) for choice in action.choices]
        close = difflib.get_close_matches(str(value), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise argparse.ArgumentError(action, f"invalid choice: {value!r}{hint} (choose from {', '.join(names)})")


def load(spec: str) -> Callable[..., Any]:
    """The function a "module:function" names, its module imported now."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def example(name: str) -> str:
    return f"example:\n  {PROG} {COMMANDS[name].example}"


def build_parser(name: str | None = None) -> Parser:
    """The whole command line; only `name`'s arguments are added (its module imported), the others are listed."""
    top = Parser(prog=PROG, description="convbench: an ILSVRC-style benchmark and leaderboard for the classic "
                                        "CNNs and R-CNN, trained on Ray; a challenge server scores test predictions.",
                 epilog=EPILOG)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for command_name, command in COMMANDS.items():
        sub = commands.add_parser(command_name, help=command.description, description=command.description,
                                  epilog=example(command_name), add_help=command.build is not None)
        if command_name == name and command.build is not None:
            load(command.build)(sub)
    return top


def parser_for(name: str) -> Parser:
    """`convbench NAME`'s own parser, its arguments added: what `convbench NAME --help` prints."""
    top = build_parser(name)
    commands = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]


def passthrough_help(name: str, run: Callable[[list[str]], int]) -> int:
    """`convbench NAME --help` for a command that parses its own arguments: its help, under this name, and an example."""
    import contextlib
    import io

    module = COMMANDS[name].run.partition(":")[0]
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            status = run(["--help"])
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    old, new = f"python -m {module}", f"{PROG} {name}"
    usage, _, rest = text.getvalue().partition("\n\n")
    shift = " " * max(len(old) - len(new), 0)  # the usage's continuation lines were indented under the old name
    usage = "\n".join(line.replace(old, new).removeprefix(shift) for line in usage.splitlines())
    print(f"{usage}\n\n{rest.replace(old, new)}".rstrip())
    print(f"\n{example(name)}")
    return status or 0


def main(argv: Sequence[str] | None = None) -> int:
    from_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv and argv[0] in COMMANDS else None
    if name is not None and COMMANDS[name].build is None:  # it parses its own arguments
        run = load(COMMANDS[name].run)
        rest = argv[1:]
        if "-h" in rest or "--help" in rest:
            return passthrough_help(name, run)
        return run(rest)
    args = build_parser(name).parse_args(argv)
    # What a command may need of its own command line: `run` re-executes it without a --db password.
    args.argv, args.from_process = argv, from_process
    return load(COMMANDS[args.command].run)(args)


if __name__ == "__main__":
    sys.exit(main())
