"""`python -m db`: bring a database's schema up to date, check migrations against the models, set roles."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from db.engine import (
    URL_ENV,
    check_url,
    create_schema,
    database_url,
    exit_status,
    open_database,
    safe_url,
    upgrade_hint,
)

DB_HELP = f"database URL (default: ${URL_ENV} or sqlite:///convbench.db)"


def pending_diffs(url: str) -> list:
    """What autogenerate would add to a new migration: empty when the models and the database agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from db.engine import make_engine
    from db.schema import Base

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            # compare_type as in migrations/env.py, so a changed column type counts as a difference.
            return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    finally:
        engine.dispose()


def cmd_upgrade(args: argparse.Namespace) -> int:
    url = create_schema(open_database(args.db, create=True))
    print(f"{safe_url(url)}: at the newest schema")
    return 0


def revisions(url: str) -> tuple[str | None, str | None]:
    """(the database's revision, the migrations' head)."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from db.engine import alembic_config, make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    return current, ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def cmd_check(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        # Without --db, the migrations are run on a scratch SQLite file, so a check needs no server.
        url = open_database(args.db) if args.db else create_schema(f"sqlite:///{Path(scratch) / 'check.db'}")
        current, head = revisions(url)
        if current != head:
            # Compared now, every later migration would read as a model change.
            print(f"{safe_url(url)}: at revision {current}, not at head {head}: run {upgrade_hint(url)} first",
                  file=sys.stderr)
            return 1
        diffs = pending_diffs(url)
    if diffs:
        print(f"{safe_url(url)}: the models differ from the migrated schema; add a migration "
              "(alembic revision --autogenerate) for:", file=sys.stderr)
        for diff in diffs:
            print(f"  {diff}", file=sys.stderr)
        return 1
    print(f"{safe_url(url)}: the migrations match the models")
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    from db.roles import GATE_PRIVILEGES, RUNNER_PRIVILEGES, SITE_PRIVILEGES, RoleSpec, grant_roles, password_from_env

    url = database_url(args.db)
    if check_url(url).get_backend_name() == "sqlite":
        print("roles do not apply to SQLite: whoever can open the file can read all of it; "
              "use PostgreSQL to keep the held labels from the runners")
        return 0
    open_database(url)
    try:
        roles = [RoleSpec(args.runner_role, RUNNER_PRIVILEGES, password_from_env(args.runner_password_env)),
                 RoleSpec(args.gate_role, GATE_PRIVILEGES, password_from_env(args.gate_password_env)),
                 RoleSpec(args.site_role, SITE_PRIVILEGES, password_from_env(args.site_password_env))]
        for line in grant_roles(url, roles):
            print(line)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`p` made the `db` group: upgrade, check, grant (`python -m db` and `convbench db`)."""
    sub = p.add_subparsers(dest="db_command", required=True, metavar="COMMAND")

    def command(name: str, help: str, example: str, description: str = "") -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=description or help,
                              epilog=f"example:\n  %(prog)s {example}".rstrip())

    up = command("upgrade", "migrate the database to the newest schema (alembic upgrade head)",
                 "--db sqlite:///convbench.db")
    up.add_argument("--db", default=None, help=DB_HELP)
    up.set_defaults(func=cmd_upgrade)

    check = command("check", "fail if the models differ from what the migrations build", "",
                    "Exit 1, listing the differences, when autogenerate would find something to migrate: "
                    "a model changed without a migration.")
    check.add_argument("--db", default=None,
                       help="a database already at the newest schema to compare with "
                            "(default: a scratch SQLite file migrated from empty)")
    check.set_defaults(func=cmd_check)

    grant = command("grant", "create the runner, gate and site roles (PostgreSQL) and set their privileges",
                    "--runner-password-env RUNNER_PW --gate-password-env GATE_PW --site-password-env SITE_PW",
                    "Create (if missing) a LOGIN role for the runners (orchestrator, workers: runs only, no held "
                    "labels), one for the submission gate and its scorer (the only one that reads held labels; "
                    "records submissions, counts throttles) and one for the site (read-only: no held labels, token "
                    "hashes or uploaded files), and reset their privileges to the declared ones. Run it as the "
                    "tables' owner after every upgrade.")
    grant.add_argument("--db", default=None, help=DB_HELP)
    grant.add_argument("--runner-role", default="convbench_runner", help="the runners' role (default: %(default)s)")
    grant.add_argument("--gate-role", default="convbench_gate",
                       help="the submission gate's role (default: %(default)s)")
    grant.add_argument("--site-role", default="convbench_site", help="the site's role (default: %(default)s)")
    grant.add_argument("--runner-password-env", default=None, metavar="VAR",
                       help="environment variable holding the runner role's password (default: set none)")
    grant.add_argument("--gate-password-env", default=None, metavar="VAR",
                       help="environment variable holding the gate role's password (default: set none)")
    grant.add_argument("--site-password-env", default=None, metavar="VAR",
                       help="environment variable holding the site role's password (default: set none)")
    grant.set_defaults(func=cmd_grant)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m db", description=__doc__)
    add_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Runs a parsed `db` command with one-line errors."""
    return exit_status(lambda: args.func(args), args.db)


def main(argv: list[str] | None = None) -> int:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
