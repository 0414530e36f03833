"""PostgreSQL roles for a deployment: what the runners and the site may touch (ARCHITECTURE.md invariant 1).

Four roles share one database:

- the owner (the migration user, e.g. the postgres image's POSTGRES_USER) owns the tables, runs
  migrations and the admin CLI, which writes challenges and their held labels;
- the runner role is what the orchestrator and the workers use: it records runs and reads the
  challenges, and holds no privilege at all on `held_labels`, nor on teams and submissions;
- the gate role is what the submission gate (gate/) and its scorer use, the only one that reads
  held labels: it authenticates teams, counts throttles, and inserts submissions. The orchestrator's
  baseline submissions go through the scorer, so they need this role's URL, not the runner's;
- the site role is what the leaderboard pages use: read-only, and not the held labels, the teams'
  token hashes, the uploaded files or the throttles (column-level grants on teams and submissions).

Roles are cluster-wide objects on PostgreSQL, which is why they are set here by a command
(`python -m db grant`) rather than by a migration: a migration would tie one cluster's role names
into every database's history. Grants are reset and given again on every call, so the privileges
are always exactly those declared below, also after a migration adds a table.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.schema import Base

VERSION_TABLE = "alembic_version"

# Privileges per table, for every table of the schema: a new table must be given a line in all three maps
# (tests/test_db.py checks), so it is denied or granted by decision, never by accident.
RUNNER_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "runs": ("SELECT", "INSERT", "UPDATE"),
    "challenges": ("SELECT",),  # a run's dataset is matched to its challenge
    "teams": (),  # token hashes
    "submissions": (),
    "held_labels": (),  # the invariant: the runners cannot select the test labels
    "throttles": (),
    "kit_images": ("SELECT",),  # baselines predict on the participants' kit images
    "audit_log": (),  # the host's record of uploads and admin actions
    "private_scores": (),  # the private part's scores, hidden until the challenge closes
    "phases": (),
    "final_selections": (),
    VERSION_TABLE: ("SELECT",),  # the orchestrator checks the schema is at head before it writes
}
GATE_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "runs": ("SELECT",),
    "challenges": ("SELECT",),
    # The quota lock is SELECT ... FOR UPDATE on the team's row, which PostgreSQL allows only with an
    # UPDATE privilege on some column: created_at is the one whose change grants nothing.
    "teams": ("SELECT", "INSERT", "UPDATE (created_at)"),
    "submissions": ("SELECT", "INSERT"),
    "held_labels": ("SELECT",),  # the scorer reads them; no page shows them
    "throttles": ("SELECT", "INSERT", "UPDATE", "DELETE"),  # failed tokens and rejected uploads, counted
    "kit_images": ("SELECT",),  # the Data page offers the kit for download
    # The scorer appends each upload's outcome: it reads the chain's head and inserts, never updates or deletes.
    "audit_log": ("SELECT", "INSERT"),
    "private_scores": ("SELECT", "INSERT"),  # written with each upload; the standings after close read them
    "phases": ("SELECT",),  # the quota's rules
    "final_selections": ("SELECT", "INSERT", "DELETE"),  # a team's marks, replaced whole
    VERSION_TABLE: ("SELECT",),
}


def _columns(table: str, *, without: tuple[str, ...]) -> str:
    """SELECT on every column of `table` but those `without`: a column-level grant, so that a column added later is
    refused until it is granted by decision. (A SELECT * on the table is then refused; the site names its columns.)"""
    names = [c.name for c in Base.metadata.tables[table].columns if c.name not in without]
    return f"SELECT ({', '.join(names)})"


# The site serves pages only: uploads, sign-in and quota go to the gate over HTTP. It reads the boards, not a held
# label, a token hash or an uploaded file, and writes nothing.
SITE_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "runs": ("SELECT",),
    "challenges": ("SELECT",),
    "teams": (_columns("teams", without=("token_hash",)),),
    # shown_score (the Ladder's public score) by decision: it is what the board shows. primary_score stays readable:
    # the site's pages show it only on a plain board (leaderboard.queries), never under the Ladder.
    "submissions": (_columns("submissions", without=("file_data",)),),
    "held_labels": (),  # the invariant: only the gate's scorer reads them
    "throttles": (),  # the gate counts them
    "kit_images": ("SELECT",),  # the Data page offers the kit for download
    "audit_log": (),  # the gate appends to it
    "private_scores": (),  # hidden until close, when `challenge close` copies them onto submissions
    "phases": ("SELECT",),  # the rules and deadlines are public
    "final_selections": ("SELECT",),  # the official board after close
    VERSION_TABLE: ("SELECT",),
}


@dataclass(frozen=True)
class RoleSpec:
    name: str
    privileges: dict[str, tuple[str, ...]]
    password: str | None = None  # None: the role gets no password (trust or peer authentication)


def password_from_env(variable: str | None) -> str | None:
    """The password in $variable; an error naming the variable when it is unset or empty."""
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise ValueError(f"${variable} is empty or unset: it should hold the role's password")
    return value


def _ident(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(name)


def _literal(conn: Connection, value: str) -> str:
    return sa.String().literal_processor(conn.dialect)(value)


def _password_literal(conn: Connection, role: str, password: str) -> str:
    """The password as the server would store it (SCRAM), so the clear text reaches no server log."""
    raw = conn.connection.dbapi_connection
    try:
        from psycopg2.extensions import encrypt_password
    except ImportError:  # another driver: the server hashes it
        return _literal(conn, password)
    return _literal(conn, encrypt_password(password, role, raw))


def _ensure_role(conn: Connection, spec: RoleSpec) -> bool:
    """Creates the role if missing, with LOGIN; returns whether it was created."""
    exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": spec.name}).first()
    role = _ident(conn, spec.name)
    conn.exec_driver_sql(f"{'ALTER' if exists else 'CREATE'} ROLE {role} LOGIN")
    if spec.password is not None:
        conn.exec_driver_sql(f"ALTER ROLE {role} PASSWORD {_password_literal(conn, spec.name, spec.password)}")
    return not exists


def _serial_sequences(conn: Connection, table: str) -> list[str]:
    """Sequences behind the table's serial columns: an INSERT that takes a default id needs them."""
    columns = Base.metadata.tables[table].columns if table in Base.metadata.tables else []
    found = []
    for column in columns:
        seq = conn.execute(sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                           {"t": _ident(conn, table), "c": column.name}).scalar()
        if seq:
            found.append(seq)  # already schema-qualified and quoted by PostgreSQL
    return found


def _grant(conn: Connection, spec: RoleSpec, schema: str) -> None:
    role, quoted_schema = _ident(conn, spec.name), _ident(conn, schema)
    database = conn.execute(sa.text("SELECT current_database()")).scalar()
    conn.exec_driver_sql(f"GRANT CONNECT ON DATABASE {_ident(conn, database)} TO {role}")
    conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {quoted_schema} TO {role}")
    # From nothing each time, so a privilege dropped from the maps above is also taken away.
    conn.exec_driver_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA {quoted_schema} FROM {role}")
    conn.exec_driver_sql(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {quoted_schema} FROM {role}")
    for table, privileges in spec.privileges.items():
        for privilege in privileges:
            conn.exec_driver_sql(f"GRANT {privilege} ON TABLE {quoted_schema}.{_ident(conn, table)} TO {role}")
        if "INSERT" in privileges:
            for seq in _serial_sequences(conn, table):
                conn.exec_driver_sql(f"GRANT USAGE ON SEQUENCE {seq} TO {role}")


def missing_tables(conn: Connection, schema: str) -> list[str]:
    present = set(sa.inspect(conn).get_table_names(schema=schema))
    declared = set(RUNNER_PRIVILEGES) | set(GATE_PRIVILEGES) | set(SITE_PRIVILEGES)
    return sorted(declared - present)


def grant_roles(url: str, roles: list[RoleSpec]) -> list[str]:
    """Creates the roles if missing and sets their privileges, in one transaction; returns lines to print."""
    from db.engine import make_engine

    engine = make_engine(url)
    report = []
    try:
        with engine.begin() as conn:
            schema = conn.execute(sa.text("SELECT current_schema()")).scalar()
            missing = missing_tables(conn, schema)
            if missing:
                raise ValueError(f"tables {', '.join(missing)} are missing: run `python -m db upgrade` first")
            for spec in roles:
                created = _ensure_role(conn, spec)
                _grant(conn, spec, schema)
                granted = ", ".join(f"{t}: {'/'.join(p)}" for t, p in spec.privileges.items() if p)
                report.append(f"{'created' if created else 'updated'} role {spec.name} ({granted}"
                              f"{'; password set' if spec.password is not None else ''})")
    finally:
        engine.dispose()
    return report
