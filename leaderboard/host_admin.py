"""The host's checks: `convbench admin audit verify|list` and `convbench admin near-duplicates SLUG`.

leaderboard.admin registers them; this module holds their work so that building the parsers imports nothing.
"""
from __future__ import annotations

import argparse
import json


def _db_here(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: an absent --db after the subcommand must not overwrite one given before it.
    p.add_argument("--db", default=argparse.SUPPRESS, metavar="URL", help="database URL (as before the subcommand)")


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from db.engine import session_scope
    from leaderboard import audit

    with session_scope(args.db) as session:
        verdict = audit.verify_chain(session)
    if verdict.broken_id is None:
        print(f"audit trail OK: {verdict.rows} rows; head {verdict.head}")
        return 0
    print(f"audit trail BROKEN at row {verdict.broken_id}: {verdict.reason} ({verdict.rows} rows before it hold)")
    return 1


def cmd_audit_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from db.engine import session_scope
    from db.schema import AuditEvent

    with session_scope(args.db) as session:
        rows = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(args.last)))
    for row in reversed(rows):
        print(f"{row.id:>7}  {row.at:%Y-%m-%d %H:%M:%S}  {row.action:<26} {row.actor:<24} {row.subject:<20} "
              f"{json.dumps(row.detail, sort_keys=True, default=str)}")
    if not rows:
        print("(none)")
    return 0


def build_audit(p: argparse.ArgumentParser) -> None:
    commands = p.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = commands.add_parser("verify", help="recompute the hash chain; name the first broken row (exit 1)",
                                 description="Recompute the audit trail's hash chain in id order. Prints OK with the "
                                             "row count and the head's hash (keep it: rows cut off the end leave a "
                                             "shorter chain that still holds), or names the first broken row and "
                                             "exits 1.",
                                 epilog="example:\n  %(prog)s --db sqlite:///convbench.db")
    _db_here(verify)
    verify.set_defaults(func=cmd_audit_verify)
    show = commands.add_parser("list", help="the last events, oldest first",
                               description="Print the audit trail's last events, oldest first, with their details.",
                               epilog="example:\n  %(prog)s --last 20 --db sqlite:///convbench.db")
    _db_here(show)
    show.add_argument("--last", type=int, default=50, metavar="N", help="how many (default 50)")
    show.set_defaults(func=cmd_audit_list)


def cmd_near_duplicates(args: argparse.Namespace) -> int:
    from db.engine import session_scope
    from leaderboard.challenges import get_challenge
    from leaderboard.near_duplicates import THRESHOLD, near_duplicates

    threshold = THRESHOLD if args.threshold is None else args.threshold
    with session_scope(args.db) as session:
        pairs = near_duplicates(session, get_challenge(session, args.slug), threshold,
                                every_submission=args.every_submission, with_official=args.with_official)
    shown = pairs if args.all else [p for p in pairs if p.flagged]
    print(f"{sum(p.flagged for p in pairs)} of {len(pairs)} pairs flagged (same wrong answer beyond chance >= "
          f"{threshold:g} of shared errors)")
    for p in shown:
        print(f"{'FLAG' if p.flagged else '    '}  {p.team_a} #{p.submission_a} ~ {p.team_b} #{p.submission_b}: "
              f"agree {p.agreement:.1%} of images; same wrong answer on {p.same_wrong:.1%} of {p.both_wrong} shared "
              f"errors (chance {p.chance:.1%}); excess {p.excess:.2f}, z {p.z:.1f}")
    return 0


def build_near_duplicates(p: argparse.ArgumentParser) -> None:
    p.add_argument("slug", help="the challenge's slug")
    p.add_argument("--threshold", type=float, default=None,
                   help="flag pairs whose excess agreement on shared errors is at least this fraction "
                        "(default: leaderboard.near_duplicates.THRESHOLD)")
    p.add_argument("--every-submission", action="store_true",
                   help="compare every submission of a team with every one of another, not only their best")
    p.add_argument("--with-official", action="store_true", help="include the official (baseline) teams")
    p.add_argument("--all", action="store_true", help="list every pair, not only the flagged ones")
    p.set_defaults(func=cmd_near_duplicates)
