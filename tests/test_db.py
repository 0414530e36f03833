"""Migrations against the models, on SQLite and PostgreSQL; the deployment's roles on PostgreSQL.

Roles are cluster-wide on PostgreSQL: each test makes its own, with a unique name, and drops them.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from db.__main__ import main, pending_diffs
from db.engine import alembic_config, cached_engine, create_schema, session_scope
from db.roles import GATE_PRIVILEGES, RUNNER_PRIVILEGES, SITE_PRIVILEGES, VERSION_TABLE
from db.schema import Base, Challenge, Run, Submission

OPTIONS = {"num_classes": 10, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 5}
INSUFFICIENT_PRIVILEGE = "42501"
PASSWORD_ENV = "CONVBENCH_TEST_RUNNER_PASSWORD"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request) -> str:
    """A fresh database with no tables at all."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    finally:
        engine.dispose()


# --- migrations ---------------------------------------------------------------------------------

def test_migrations_from_empty_build_the_models_schema(empty_url: str, capsys) -> None:
    assert main(["upgrade", "--db", empty_url]) == 0
    assert tables(empty_url) == set(Base.metadata.tables) | {VERSION_TABLE}
    assert revision(empty_url) == ScriptDirectory.from_config(alembic_config(empty_url)).get_current_head()
    assert pending_diffs(empty_url) == []
    assert main(["check", "--db", empty_url]) == 0
    assert "the migrations match the models" in capsys.readouterr().out


def test_downgrade_to_base_and_up_again(empty_url: str) -> None:
    create_schema(empty_url)
    command.downgrade(alembic_config(empty_url), "base")
    assert tables(empty_url) <= {VERSION_TABLE} and revision(empty_url) is None
    create_schema(empty_url)
    assert tables(empty_url) == set(Base.metadata.tables) | {VERSION_TABLE}
    assert pending_diffs(empty_url) == []


def test_check_fails_when_the_database_differs_from_the_models(empty_url: str, capsys) -> None:
    create_schema(empty_url)
    engine = sa.create_engine(empty_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE runs ADD COLUMN stray INTEGER")
    engine.dispose()
    assert main(["check", "--db", empty_url]) == 1
    err = capsys.readouterr().err
    assert "add a migration" in err and "stray" in err


def test_check_asks_for_an_upgrade_before_comparing(sqlite_url: str, capsys) -> None:
    Path(make_url(sqlite_url).database).touch()  # an existing database with no schema (check creates none)
    assert main(["check", "--db", sqlite_url]) == 1
    assert "not at head" in capsys.readouterr().err


def test_check_without_a_database_migrates_a_scratch_one(capsys) -> None:
    assert main(["check"]) == 0
    assert "sqlite" in capsys.readouterr().out


# --- roles ------------------------------------------------------------------------------------

def test_role_declarations_cover_every_table() -> None:
    every = set(Base.metadata.tables) | {VERSION_TABLE}
    assert set(RUNNER_PRIVILEGES) == every and set(GATE_PRIVILEGES) == every and set(SITE_PRIVILEGES) == every
    # Only the gate reads the held labels; the site writes nothing at all.
    assert RUNNER_PRIVILEGES["held_labels"] == SITE_PRIVILEGES["held_labels"] == ()
    assert "SELECT" in GATE_PRIVILEGES["held_labels"]
    assert all(p.startswith("SELECT") for privileges in SITE_PRIVILEGES.values() for p in privileges)


def test_grant_on_sqlite_says_roles_do_not_apply(sqlite_url: str, capsys) -> None:
    create_schema(sqlite_url)
    assert main(["grant", "--db", sqlite_url]) == 0
    assert "roles do not apply to SQLite" in capsys.readouterr().out


@dataclass(frozen=True)
class Roles:
    owner_url: str
    runner: str
    site: str
    runner_url: str
    site_url: str
    gate: str
    gate_url: str


def role_url(url: str, role: str) -> str:
    # Trust authentication here: a LOGIN role connects without its password.
    return make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


def drop_roles(pg_server: str, database_url: str, *names: str) -> None:
    for url, statement in ((database_url, "DROP OWNED BY {}"), (pg_server, "DROP ROLE IF EXISTS {}")):
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            existing = set(conn.execute(sa.text("SELECT rolname FROM pg_roles")).scalars())
            for name in names:
                if name in existing:
                    conn.exec_driver_sql(statement.format(f'"{name}"'))
        engine.dispose()


@pytest.fixture
def roles(pg_server: str, pg_url: str, monkeypatch) -> Iterator[Roles]:
    suffix = uuid.uuid4().hex[:10]
    runner, site, gate = f"cb_runner_{suffix}", f"cb_site_{suffix}", f"cb_gate_{suffix}"
    create_schema(pg_url)
    monkeypatch.setenv(PASSWORD_ENV, f"pw-{suffix}")
    assert main(["grant", "--db", pg_url, "--runner-role", runner, "--site-role", site, "--gate-role", gate,
                 "--runner-password-env", PASSWORD_ENV]) == 0
    found = Roles(pg_url, runner, site, role_url(pg_url, runner), role_url(pg_url, site), gate,
                  role_url(pg_url, gate))
    try:
        yield found
    finally:
        for url in (found.runner_url, found.site_url, found.gate_url):
            cached_engine(url).dispose()
        drop_roles(pg_server, pg_url, runner, site, gate)


def denied(url: str, statement: str) -> bool:
    """Whether PostgreSQL refuses `statement` to the URL's role for want of a privilege."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(statement)
    except sa.exc.ProgrammingError as exc:
        return getattr(exc.orig, "pgcode", None) == INSUFFICIENT_PRIVILEGE
    finally:
        engine.dispose()
    return False


def labelled_challenge(owner_url: str) -> dict[str, int]:
    """A challenge made by the owner, as the admin CLI does; returns its held labels."""
    from leaderboard.challenges import create_challenge
    from workers.datasets import held_test_labels

    create_challenge(owner_url, "syn", "synthetic", OPTIONS, title="Synthetic")
    return held_test_labels("synthetic", OPTIONS)


def predictions(labels: dict[str, int]) -> bytes:
    rows = [f"{image_id},{label},{(label + 1) % 10}" for image_id, label in labels.items()]
    return ("image_id,pred_1,pred_2\n" + "\n".join(rows) + "\n").encode()


def a_job():
    from workers.jobs import JobSpec

    return JobSpec(suite="deploy", task="classification", arch="resnet18", dataset="synthetic",
                   dataset_options=OPTIONS, recipe={"epochs": 1}, seed=0, input_size=8)


@pytest.mark.postgres
def test_runner_role_records_runs_but_cannot_read_held_labels(roles: Roles, tmp_path: Path) -> None:
    from leaderboard.challenges import find_challenge
    from orchestrator.store import Store

    labelled_challenge(roles.owner_url)
    # The orchestrator's own path, as the runner: a schema check at head, queue, state, result.
    store = Store(roles.runner_url, tmp_path / "spool", retries=())
    store.prepare()
    job = a_job()
    store.queue([job])
    store.set_state(job.job_id, "running")
    assert store.record(job, {"top1_err": 0.5, "top5_err": 0.1, "epochs_done": 1})
    with session_scope(roles.runner_url) as s:
        assert s.get(Run, job.job_id).state == "done"
        assert find_challenge(s, "synthetic", OPTIONS).slug == "syn"  # a run finds its challenge
    assert not denied(roles.runner_url, "UPDATE runs SET attempts = attempts + 1")

    # ARCHITECTURE.md invariant 1: not a row, not a column, not a count of the held labels.
    for statement in ("SELECT * FROM held_labels", "SELECT image_id FROM held_labels",
                      "SELECT count(*) FROM held_labels",
                      "INSERT INTO held_labels (challenge_id, image_id, label) VALUES (1, 'x', 0)",
                      "SELECT token_hash FROM teams", "SELECT * FROM submissions",
                      "DELETE FROM runs", "UPDATE challenges SET quota = 100"):
        assert denied(roles.runner_url, statement), statement


@pytest.mark.postgres
def test_gate_role_scores_submissions_and_the_orchestrators_baselines(roles: Roles, tmp_path: Path) -> None:
    from leaderboard import scoring
    from leaderboard.quota import submit
    from leaderboard.tokens import create_team
    from orchestrator.baselines import BASELINE_TEAM, submit_baseline
    from orchestrator.store import Store

    labels = labelled_challenge(roles.owner_url)
    with session_scope(roles.owner_url) as s:
        token = create_team(s, "alpha")
    scoring.forget_held_labels()

    # A team's upload through the gate: validation and scoring read the held labels, the quota
    # transaction locks the team's row (SELECT ... FOR UPDATE) and inserts with the sequence.
    result = submit(roles.gate_url, token, "syn", predictions(labels), "preds.csv", label="mine")
    assert result.primary_score == pytest.approx(0.0) and result.quota_left == 1

    # A run recorded as the runner, its baseline submitted with the scorer's (gate) role.
    from dataclasses import replace

    root = tmp_path / "runs"
    job = replace(a_job(), storage=str(root))
    Store(roles.runner_url, tmp_path / "spool", retries=()).record(job, {"top5_err": 0.0})
    job.folder.mkdir(parents=True)  # the driver reads the predictions from the job's own folder, as a worker wrote them
    (job.folder / "predictions.csv").write_bytes(predictions(labels))
    baseline = submit_baseline(roles.gate_url, job, root)
    assert baseline is not None and baseline.team == BASELINE_TEAM and baseline.quota_left is None

    with session_scope(roles.gate_url) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Submission)) == 2
        assert s.execute(sa.text("SELECT count(*) FROM held_labels")).scalar() == len(labels)
        assert list(scoring.public_image_ids(s, s.scalars(sa.select(Challenge)).one())) == sorted(labels)
    for statement in ("UPDATE runs SET state = 'failed'",
                      "INSERT INTO held_labels (challenge_id, image_id) VALUES (1, 'x')",
                      "DELETE FROM submissions", "UPDATE submissions SET primary_score = 0",
                      "UPDATE teams SET revoked = false", "UPDATE challenges SET quota = 100"):
        assert denied(roles.gate_url, statement), statement


@pytest.mark.postgres
def test_site_role_reads_the_boards_but_no_label_token_hash_or_file(roles: Roles) -> None:
    from leaderboard.queries import challenges_frame, leaderboard, team_submissions
    from leaderboard.quota import submit
    from leaderboard.tokens import create_team

    labels = labelled_challenge(roles.owner_url)
    with session_scope(roles.owner_url) as s:
        token = create_team(s, "alpha")
    submit(roles.gate_url, token, "syn", predictions(labels), "preds.csv", label="mine")
    # What the pages read, as the site role.
    assert list(challenges_frame(roles.site_url)["slug"]) == ["syn"]
    board = leaderboard(roles.site_url, "syn")
    assert list(board["entry"]) == ["mine"] and list(board["team"]) == ["alpha"]
    assert list(team_submissions(roles.site_url, "alpha")["label"]) == ["mine"]
    # Invariant 1 and the tokens: refused, not merely empty.
    for statement in ("SELECT * FROM held_labels", "SELECT count(*) FROM held_labels",
                      "SELECT token_hash FROM teams", "SELECT * FROM teams", "SELECT file_data FROM submissions",
                      "SELECT * FROM throttles", "INSERT INTO teams (name, token_hash) VALUES ('x', 'y')",
                      ("INSERT INTO submissions (team_id, challenge_id, label, file_sha256, n_rows, primary_score, "
                       "scores) VALUES (1, 1, 'x', 'y', 1, 0, '{}')"), "UPDATE runs SET state = 'failed'"):
        assert denied(roles.site_url, statement), statement
    assert not denied(roles.site_url, "SELECT id, name, official, revoked FROM teams")


@pytest.mark.postgres
def test_grant_again_resets_privileges_and_keeps_passwords_hashed(roles: Roles) -> None:
    owner = sa.create_engine(roles.owner_url)
    with owner.begin() as conn:
        conn.exec_driver_sql(f'GRANT SELECT ON held_labels TO "{roles.runner}"')
    assert not denied(roles.runner_url, "SELECT * FROM held_labels")
    assert main(["grant", "--db", roles.owner_url, "--runner-role", roles.runner, "--site-role", roles.site,
                 "--gate-role", roles.gate]) == 0
    assert denied(roles.runner_url, "SELECT * FROM held_labels")
    assert not denied(roles.gate_url, "SELECT * FROM held_labels")
    assert denied(roles.site_url, "SELECT * FROM held_labels")
    with owner.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN (:r, :s)"),
                                   {"r": roles.runner, "s": roles.site}).all())
    owner.dispose()
    # Hashed before it left the client; the second grant, given no password, kept the first.
    assert stored[roles.runner].startswith("SCRAM-SHA-256$") and "pw-" not in stored[roles.runner]
    assert stored[roles.site] is None


@pytest.mark.postgres
def test_grant_refuses_a_database_without_the_schema(pg_server: str, pg_url: str, monkeypatch, capsys) -> None:
    runner, site = f"cb_runner_{uuid.uuid4().hex[:10]}", f"cb_site_{uuid.uuid4().hex[:10]}"
    try:
        assert main(["grant", "--db", pg_url, "--runner-role", runner, "--site-role", site]) == 2
        assert "python -m db upgrade" in capsys.readouterr().err
        monkeypatch.delenv(PASSWORD_ENV, raising=False)
        create_schema(pg_url)
        assert main(["grant", "--db", pg_url, "--runner-role", runner, "--site-role", site,
                     "--runner-password-env", PASSWORD_ENV]) == 2
        assert f"${PASSWORD_ENV} is empty or unset" in capsys.readouterr().err
        engine = sa.create_engine(pg_server)
        with engine.connect() as conn:
            made = conn.execute(sa.text("SELECT count(*) FROM pg_roles WHERE rolname IN (:r, :s)"),
                                {"r": runner, "s": site}).scalar()
        engine.dispose()
        assert made == 0  # refused before anything was made
    finally:
        drop_roles(pg_server, pg_url, runner, site)
