"""`python -m leaderboard admin ...`: challenges, teams, tokens and submissions from the shell.

The same commands are `convbench challenge create|list`, `convbench team create|list|revoke`,
`convbench submit` and `convbench admin ...`. Building their parsers imports argparse and db.engine
only; each command imports what it works with.
"""
from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from db.engine import DEFAULT_URL, URL_ENV
from leaderboard import challenge_admin, host_admin

TOKEN_ENV = "CONVBENCH_TOKEN"


def parse_option(text: str) -> tuple[str, Any]:
    """`key=value`, the value read as a TOML value (10, 0.5, true, "x"); a bare word stays a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip(), parsed


def cmd_create_challenge(args: argparse.Namespace) -> int:
    from db.engine import session_scope
    from leaderboard import challenge_admin
    from leaderboard.challenges import list_challenges

    if args.if_missing:
        with session_scope(args.db) as session:
            if any(c.slug == args.slug for c in list_challenges(session)):
                print(f"challenge {args.slug!r} exists already")
                return 0
    challenge = challenge_admin.create(args)
    print(f"challenge {challenge.slug!r} (id {challenge.id}): {challenge.task} on {challenge.dataset}, "
          f"metric {challenge.metric}, {len(challenge.class_names)} classes, "
          f"quota {challenge.quota} per {challenge.window_days:g} days"
          + (f"; the Ladder, threshold {challenge.ladder_threshold:g}" if challenge.ladder_threshold else ""))
    return 0


def cmd_create_team(args: argparse.Namespace) -> int:
    from db.engine import session_scope
    from leaderboard.tokens import create_team

    with session_scope(args.db) as session:
        token = create_team(session, args.name, official=args.official)
    kind = "official team" if args.official else "team"
    print(f"{kind} {args.name!r} created. Its token, shown only this once:\n{token}")
    return 0


def cmd_revoke_token(args: argparse.Namespace) -> int:
    from db.engine import session_scope
    from leaderboard.tokens import revoke

    with session_scope(args.db) as session:
        revoke(session, args.name)
    print(f"token of team {args.name!r} revoked")
    return 0


def cmd_list_challenges(args: argparse.Namespace) -> int:
    from db.engine import session_scope
    from leaderboard.challenges import list_challenges

    with session_scope(args.db) as session:
        rows = [(c.id, c.slug, c.task, c.dataset, c.metric, f"{c.quota}/{c.window_days:g}d",
                 f"{c.ladder_threshold:g}" if c.ladder_threshold else "-", c.title) for c in list_challenges(session)]
    _table(("id", "slug", "task", "dataset", "metric", "quota", "ladder", "title"), rows)
    return 0


def cmd_list_teams(args: argparse.Namespace) -> int:
    from db.engine import session_scope
    from leaderboard.tokens import list_teams

    with session_scope(args.db) as session:
        rows = [(t.id, t.name, "yes" if t.official else "", "yes" if t.revoked else "", f"{t.created_at:%Y-%m-%d}")
                for t in list_teams(session)]
    _table(("id", "name", "official", "revoked", "created"), rows)
    return 0


def cmd_list_submissions(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from db.engine import session_scope
    from db.schema import Challenge, Submission, Team
    from leaderboard import scoring

    query = (select(Submission, Team.name, Challenge.slug, Challenge.metric)
             .join(Team, Submission.team_id == Team.id).join(Challenge, Submission.challenge_id == Challenge.id)
             .order_by(Submission.id))
    if args.challenge:
        query = query.where(Challenge.slug == args.challenge)
    with session_scope(args.db) as session:
        rows = [(s.id, slug, team, s.label, metric, f"{scoring.metric_value(metric, s.primary_score):.4f}",
                 s.n_rows, f"{s.created_at:%Y-%m-%d %H:%M}", s.run_id or "")
                for s, team, slug, metric in session.execute(query)]
    _table(("id", "challenge", "team", "label", "metric", "value", "rows", "created (UTC)", "run"), rows)
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    from leaderboard import scoring
    from leaderboard.quota import rescore

    scored = rescore(args.db, args.id)
    metric = scored.scores["metric"]
    print(f"submission {args.id}: {metric} = {scoring.metric_value(metric, scored.primary_score):.4f}")
    return 0


def read_token(args: argparse.Namespace) -> str | None:
    """The team's token from --token-file or $CONVBENCH_TOKEN, never from the command line (ps shows it to every
    user); None after saying what is missing."""
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            print(f"error: cannot read the token file {args.token_file}: {getattr(exc, 'strerror', None) or exc}",
                  file=sys.stderr)
            return None
        if not token:
            print(f"error: the token file {args.token_file} is empty", file=sys.stderr)
        return token or None
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        print(f"error: set ${TOKEN_ENV} to the team's token, or give --token-file PATH", file=sys.stderr)
    return token or None


def _submit_direct(args: argparse.Namespace, token: str, data: bytes, filename: str) -> dict[str, Any]:
    """Submit through the database (an operator holding the gate's role), answered as the gate answers
    (leaderboard.receipt: scores withheld in a hidden phase, what they cover)."""
    from leaderboard import receipt
    from leaderboard.quota import entry_fields, submit

    result = submit(args.db, token, args.challenge, data, filename, label=args.name, description=args.description,
                    code_url=args.code_url, throttle_key=cli_client())
    answer = receipt.answer(args.db, result, entry_fields(args.name).name)
    return {**answer, "next_slot_at": result.next_slot_at.isoformat() if result.next_slot_at else None}


def cmd_submit(args: argparse.Namespace) -> int:
    token = read_token(args)
    if token is None:
        return 2
    if args.select_final is not None:
        return challenge_admin.select_final(args, token)
    if args.file is None:
        print("error: give the prediction file, or --select-final ID... to mark finals", file=sys.stderr)
        return 2
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    if args.server:
        from leaderboard import gate_client

        answer = gate_client.submit(args.server, token, args.challenge, data, path.name, name=args.name,
                                    description=args.description, code_url=args.code_url)
    else:
        answer = _submit_direct(args, token, data, path.name)
    print(submit_report(answer))
    return 0


def submit_report(answer: dict[str, Any]) -> str:
    """What `convbench submit` prints of a submission's result: scores with CIs (or that a hidden phase withholds
    them), what they cover, rank, quota left, next slot."""
    lines = [f"already submitted as #{answer['submission_id']}; not charged"] if answer.get("existing") else []
    if answer.get("hidden"):
        lines.append(f"submission {answer['submission_id']}: {answer['status']}")
    else:
        lines.append(format_scores(answer["scores"]))
    if answer.get("ladder") and not answer.get("hidden"):
        from leaderboard.receipt import ladder_note

        lines.append(f"shown by {ladder_note(float(answer['ladder']))}")
    if answer.get("scored_on"):
        lines.append(f"scored on: {answer['scored_on']}"
                     + (f"; {answer['final_ranking']}" if answer.get("final_ranking") else ""))
    rank, size = answer.get("rank"), answer.get("board_size")
    if rank is not None:
        where = "" if answer.get("on_board", True) else " (your team's better entry is the one the board shows)"
        lines.append(f"rank: {rank} of {max(int(size or 0), int(rank))} on the board{where}")
    if answer.get("quota_left") is None:
        lines.append("quota: official team, not bound")
    else:
        slot = answer.get("next_slot_at")
        when = f"; next slot {str(slot).replace('T', ' ')[:19]} UTC" if slot else ""
        done = "" if answer.get("existing") else f"submission {answer['submission_id']} recorded; "
        lines.append(f"{done}submissions left in this window: {answer['quota_left']}{when}")
    return "\n".join(lines)


def cli_client() -> str:
    """The throttle's name for this command line's caller: wrong tokens from it are counted together."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no passwd entry
        user = str(os.getuid())
    return f"cli:{user}@{socket.gethostname()}"


def format_scores(scores: dict[str, Any]) -> str:
    """One line per score, with its confidence interval where there is one."""
    lines = []
    for key, value in scores.items():
        if key.endswith("_ci") or not isinstance(value, float):
            continue
        ci = scores.get(f"{key}_ci")
        lines.append(f"{key:>9} = {value:.4f}" + (f"  (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""))
    return "\n".join(lines)


def _table(header: tuple[str, ...], rows: list[tuple]) -> None:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if not rows:
        print("(none)")


def _db_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, metavar="URL",
                   help=f"database URL (default: ${URL_ENV}, else {DEFAULT_URL}); migrated to the newest schema first")


def _create_challenge(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slug", required=True, help="short name used in URLs and commands, e.g. synthetic-10")
    p.add_argument("--dataset", default=None,
                   help="dataset name from the registry, e.g. synthetic, digits: the challenge is on its test split, or "
                        "with --images/--labels, the dataset the benchmark's runs train on before they predict on the kit")
    p.add_argument("--option", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                   help="a dataset option, e.g. num_classes=20 (repeatable; values read as TOML)")
    p.add_argument("--title", default="", help="title shown on the site (default: the slug)")
    p.add_argument("--quota", type=int, default=2, help="scored submissions per team per window (default 2)")
    p.add_argument("--window-days", type=float, default=7.0, help="length of the rolling window in days (default 7)")
    p.add_argument("--if-missing", action="store_true", help="do nothing if a challenge of that slug exists")
    challenge_admin.add_source_arguments(p)
    p.set_defaults(func=cmd_create_challenge)


def _create_team(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the team's name, shown on the leaderboard")
    p.add_argument("--official", action="store_true", help="an official baseline team: not bound by the quota")
    p.set_defaults(func=cmd_create_team)


def _revoke_token(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the team's name")
    p.set_defaults(func=cmd_revoke_token)


def _list_submissions(p: argparse.ArgumentParser) -> None:
    p.add_argument("--challenge", default=None, metavar="SLUG", help="only this challenge's submissions")
    p.set_defaults(func=cmd_list_submissions)


def _rescore(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", type=int, help="the submission's id (see list-submissions)")
    p.set_defaults(func=cmd_rescore)


class _RefuseToken(argparse.Action):
    """`--token` is refused, not merely absent: otherwise argparse would read it as an abbreviation of --token-file."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.error(f"--token is refused: a token on the command line is shown by ps to every user of this machine; "
                     f"set ${TOKEN_ENV} or give --token-file PATH")


def _submit(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", default=None,
                   help="CSV (classification or detection) or COCO results JSON (detection)")
    p.add_argument("--select-final", nargs="*", type=int, default=None, metavar="ID",
                   help="instead of a file: mark these submissions as the team's finals for the private ranking "
                        "(none: clear the marks; the best public ones then count)")
    p.allow_abbrev = False  # no option is matched by a prefix: `--tok` must not mean --token-file
    p.add_argument("--token", action=_RefuseToken, nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--server", default=None, metavar="URL",
                   help="the submission gate, e.g. https://bench.example.org:8502 (default: submit straight into the "
                        "database of --db, as an operator)")
    p.add_argument("--token-file", default=None, metavar="PATH",
                   help=f"a file holding the team's token (default: ${TOKEN_ENV}); never the token itself on the "
                        "command line, where ps shows it")
    p.add_argument("--challenge", required=True, metavar="SLUG", help="the challenge's slug")
    p.add_argument("--name", "--label", dest="name", default="",
                   help="the entry's name on the leaderboard, e.g. resnet50 (--label: the same)")
    p.add_argument("--description", default="",
                   help="what the entry is, shown on the leaderboard and in its exports (at most 2,000 characters)")
    p.add_argument("--code-url", default="", metavar="URL",
                   help="an http(s) link to the entry's code, e.g. https://github.com/team/model")
    p.set_defaults(func=cmd_submit)


def _sets(func: Callable[..., int]) -> Callable[[argparse.ArgumentParser], None]:
    return lambda p: p.set_defaults(func=func)


class Sub:
    """One admin command: its one-line help, a longer description (default: the help), an example's arguments."""

    def __init__(self, build: Callable[[argparse.ArgumentParser], None], help: str, example: str,
                 description: str = "") -> None:
        self.build, self.help, self.example, self.description = build, help, example, description or help


# By their `python -m leaderboard admin` names; `convbench challenge|team|submit` give them shorter ones.
SUBCOMMANDS: dict[str, Sub] = {
    "create-challenge": Sub(_create_challenge, "create a challenge on a dataset's test split or on private labels",
                            "--slug synthetic-10 --dataset synthetic --option num_classes=10",
                            "Create a challenge: stores the test labels (held, never shown), the test images as the "
                            "participant kit, and the rule of at most QUOTA scored submissions per team per rolling "
                            "window. The test set is a registry dataset's test split (--dataset), a folder of images "
                            "with a labels file only the server has (--images, --labels), or ImageNet's val held out "
                            "(--dataset imagenet --val-per-class N)."),
    "challenge-kit": Sub(challenge_admin.build_kit, "write a challenge's participant kit", "synthetic-10 kit/",
                         "Write the participant kit: the test images under opaque ids in a shuffled order, without "
                         "metadata; sample_submission.csv; classes.csv; rules.json and README.txt; MANIFEST.sha256."),
    "challenge-phase": Sub(challenge_admin.build_phase, "add or list a challenge's phases",
                           "add syn --name final --start 2027-01-01 --end 2027-01-08 --quota 2 --total 3",
                           "Phases: when a challenge takes submissions and under which rules (per rolling window, "
                           "per UTC day, in total); outside every phase an upload is refused with the phases' times. "
                           "A challenge without phases takes submissions until it closes, under its own quota."),
    "close-challenge": Sub(challenge_admin.build_close, "close a challenge to submissions", "synthetic-10",
                           "Close a challenge: every later submission is refused; the board and kit stay."),
    "create-team": Sub(_create_team, "create a team and print its token once", "'my team'",
                       "Create a team. Its token is printed once and stored only as a hash."),
    "revoke-token": Sub(_revoke_token, "revoke a team's token", "'my team'",
                        "Revoke a team's token; its submissions stay on the leaderboard."),
    "list-challenges": Sub(_sets(cmd_list_challenges), "list the challenges", "--db sqlite:///convbench.db"),
    "list-teams": Sub(_sets(cmd_list_teams), "list the teams (never their tokens)", "--db sqlite:///convbench.db"),
    "list-submissions": Sub(_list_submissions, "list scored submissions", "--challenge synthetic-10",
                            "List scored submissions with their primary metric."),
    "rescore": Sub(_rescore, "score a stored submission again", "42",
                   "Validate and score a stored submission again, e.g. after a scorer fix; its time and quota use "
                   "stay as they were."),
    "audit": Sub(host_admin.build_audit, "verify or list the audit trail", "verify --db sqlite:///convbench.db",
                 "The audit trail: every upload's outcome, failed token and admin action, each row hashing the one "
                 "before. `audit verify` recomputes the chain and names the first broken row (exit 1); "
                 "`audit list` shows the last events."),
    "near-duplicates": Sub(host_admin.build_near_duplicates, "flag pairs of teams with near-identical entries",
                           "synthetic-10 --threshold 0.8",
                           "For the host only: pairs of teams whose best files give the same wrong answer on more of "
                           "their shared errors than chance explains (one group with several accounts)."),
    "submit": Sub(_submit, "submit a prediction file as a team",
                  "--server http://127.0.0.1:8502 --challenge synthetic-10 preds.csv --name resnet50",
                  "Validate, score and record a prediction file, through the gate (--server) or the database; "
                  f"prints the scores with their CIs, the rank and the submissions left in the window. The token "
                  f"comes from ${TOKEN_ENV} or --token-file. A rejected file costs nothing, and so does a file the "
                  "team already submitted to the challenge: its earlier result is shown."),
}
CHALLENGE = {"create": "create-challenge", "list": "list-challenges", "kit": "challenge-kit",
             "close": "close-challenge", "phase": "challenge-phase"}
TEAM = {"create": "create-team", "list": "list-teams", "revoke": "revoke-token"}


def add_command(p: argparse.ArgumentParser, name: str) -> None:
    """`p` made the admin command `name`: its --db, its arguments, and its example unless `p` has one."""
    sub = SUBCOMMANDS[name]
    _db_option(p)
    sub.build(p)
    p.epilog = p.epilog or f"example:\n  %(prog)s {sub.example}"
    p.set_defaults(prepare=prepare)


def _group(p: argparse.ArgumentParser, dest: str, names: dict[str, str]) -> None:
    commands = p.add_subparsers(dest=dest, required=True, metavar="COMMAND")
    for shown, name in names.items():
        sub = SUBCOMMANDS[name]
        add_command(commands.add_parser(shown, help=sub.help, description=sub.description), name)


def add_admin_commands(p: argparse.ArgumentParser) -> None:
    """`p` made the `admin` group: every command under its full name."""
    _group(p, "admin_command", {name: name for name in SUBCOMMANDS})


def add_challenge_commands(p: argparse.ArgumentParser) -> None:
    """`p` made `convbench challenge`: create, list."""
    _group(p, "challenge_command", CHALLENGE)


def add_team_commands(p: argparse.ArgumentParser) -> None:
    """`p` made `convbench team`: create, list, revoke."""
    _group(p, "team_command", TEAM)


def add_submit_arguments(p: argparse.ArgumentParser) -> None:
    """`p` made `convbench submit`."""
    add_command(p, "submit")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add `admin` and its subcommands to the top-level parser's subcommands."""
    add_admin_commands(commands.add_parser(
        "admin", help="manage challenges, teams, tokens and submissions",
        description="Manage the challenge server: challenges, teams and their tokens, submissions."))


def run(args: argparse.Namespace) -> int:
    """Runs a parsed admin command on an up-to-date schema, with one-line errors."""
    from db.engine import exit_status
    from leaderboard.errors import LeaderboardError

    def command() -> int:
        args.prepare(args)
        return args.func(args)

    return exit_status(command, getattr(args, "db", None), failures=(LeaderboardError,))


CREATES = (cmd_create_challenge, cmd_create_team)  # the commands that may start a new database


def prepare(args: argparse.Namespace) -> None:
    """Every admin command works on an up-to-date schema, of a database that exists unless it creates things.

    Listing, revoking or submitting against a mistyped SQLite path must say so, not make an empty file.
    """
    from db.engine import create_schema, open_database

    if getattr(args, "server", None):  # `submit --server`: the gate holds the database, this command none
        return
    args.db = create_schema(open_database(args.db, create=args.func in CREATES))
