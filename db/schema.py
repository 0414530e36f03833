"""The whole schema, as SQLAlchemy 2.0 typed mappings.

`held_labels` is a table of its own so that a database role can be denied it
(ARCHITECTURE.md invariant 1): the runners' role gets every other table, never that one.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012 - SQLAlchemy reads the class attribute


class Run(Base):
    """One benchmark job: its identity, its state while it runs, its result and provenance."""

    __tablename__ = "runs"
    __table_args__ = (
        # The Campaign page: jobs per suite and state (GROUP BY on this index alone; it also finds a suite's
        # runs), and a page of the jobs newest first without sorting every run.
        Index("ix_runs_suite_state", "suite", "state"),
        Index("ix_runs_created", "created_at"),
    )

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # hash of what determines the result
    suite: Mapped[str] = mapped_column(String(128))
    task: Mapped[str] = mapped_column(String(32), default="classification")
    arch: Mapped[str] = mapped_column(String(64), index=True)
    family: Mapped[str] = mapped_column(String(64), default="")
    dataset: Mapped[str] = mapped_column(String(64), index=True)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)  # queued|running|done|failed
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)

    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    top1_err: Mapped[float | None] = mapped_column(Float)
    top5_err: Mapped[float | None] = mapped_column(Float)
    map50: Mapped[float | None] = mapped_column(Float)
    map_coco: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)  # top-k errors, losses, per-class AP, ...
    history: Mapped[list[Any]] = mapped_column(default=list)  # one dict per epoch: learning curves

    # Cost of the run.
    params: Mapped[int | None] = mapped_column(Integer)
    flops: Mapped[float | None] = mapped_column(Float)  # per image at the evaluated size, torch counter (2 per MAC)
    input_size: Mapped[int | None] = mapped_column(Integer)
    train_ips: Mapped[float | None] = mapped_column(Float)
    eval_ips: Mapped[float | None] = mapped_column(Float)
    wall_s: Mapped[float | None] = mapped_column(Float)
    peak_mem_mb: Mapped[float | None] = mapped_column(Float)

    # Provenance (ARCHITECTURE.md invariant 4).
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    git_commit: Mapped[str | None] = mapped_column(String(64))
    versions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    hardware: Mapped[str | None] = mapped_column(String(256))
    node: Mapped[str | None] = mapped_column(String(128))
    launcher: Mapped[str | None] = mapped_column(String(32))
    checkpoint: Mapped[str | None] = mapped_column(Text)
    log_path: Mapped[str | None] = mapped_column(Text)  # where the worker wrote it; shown, never opened by the site
    # The log's tail as data the system owns: the driver reads it from inside the storage root and stores it
    # here, capped, so the site never opens a path taken from a row.
    log_text: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Challenge(Base):
    """A dataset's test split plus a task, a metric and a submission rule."""

    __tablename__ = "challenges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(256), default="")
    task: Mapped[str] = mapped_column(String(32), default="classification")
    dataset: Mapped[str] = mapped_column(String(64))
    dataset_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    class_names: Mapped[list[Any]] = mapped_column(default=list)
    metric: Mapped[str] = mapped_column(String(32), default="top5_err")
    quota: Mapped[int] = mapped_column(Integer, default=2)
    window_days: Mapped[float] = mapped_column(Float, default=7.0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # True where the labels are reproducible from public code (a generated or shipped dataset): shown as
    # "open-book" on the board, so nobody mistakes such a score for one on held-out labels.
    open_book: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # no submission after it
    kit_sha256: Mapped[str | None] = mapped_column(String(64))  # the SHA-256 of the kit's MANIFEST.sha256
    # The share of test images in the public part (leaderboard.parts); 1.0 (rows from before the split): all public.
    public_fraction: Mapped[float] = mapped_column(Float, default=1.0, server_default="1.0")
    final_count: Mapped[int] = mapped_column(Integer, default=2, server_default="2")  # finals a team may mark
    # The Ladder (leaderboard.ladder): a team's public score moves only when an upload beats its shown best by more
    # than this (a fraction of the error); NULL: a plain board, every exact public score shown.
    ladder_threshold: Mapped[float | None] = mapped_column(Float)


class KitImage(Base):
    """A challenge's test image as participants get it: stored once at creation with its metadata stripped,
    under an opaque id, in a shuffled order (`position`), so neither name, order nor bytes tell a label."""

    __tablename__ = "kit_images"
    __table_args__ = (UniqueConstraint("challenge_id", "position", name="uq_kit_images_position"),)

    challenge_id: Mapped[int] = mapped_column(ForeignKey("challenges.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(128))  # "<image_id>.<ext>" in the kit's images/ folder
    media_type: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    sha256: Mapped[str] = mapped_column(String(64))


class Throttle(Base):
    """Failed attempts per (scope, key): a wrong token, a rejected upload. In the database so that every
    server process and replica sees the same counts, and a new browser session resets nothing."""

    __tablename__ = "throttles"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)  # e.g. "auth", "rejected-upload"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)  # e.g. a client address, a token hash prefix
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class HeldLabel(Base):
    """The test labels: read only by leaderboard.scoring, never by a page, an export or a worker."""

    __tablename__ = "held_labels"

    challenge_id: Mapped[int] = mapped_column(ForeignKey("challenges.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[int | None] = mapped_column(Integer)  # classification
    boxes: Mapped[list[Any] | None] = mapped_column(JSON)  # detection: [[x1, y1, x2, y2, cls, difficult], ...]
    # "public" or "private" (leaderboard.parts); NULL (rows from before the split): public. Here, not on kit_images,
    # so that only the gate's role can tell which image counts where.
    part: Mapped[str | None] = mapped_column(String(8))


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    official: Mapped[bool] = mapped_column(Boolean, default=False)  # baselines: not bound by the quota
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    submissions: Mapped[list[Submission]] = relationship(back_populates="team")


class Submission(Base):
    __tablename__ = "submissions"
    __table_args__ = (
        UniqueConstraint("challenge_id", "run_id", name="uq_submission_run"),
        Index("ix_submissions_quota", "team_id", "challenge_id", "created_at"),
        # The board: each team's best (MIN per team), and every submission in score order, a page at a time.
        Index("ix_submissions_team_best", "challenge_id", "team_id", "primary_score", "created_at", "id"),
        Index("ix_submissions_ranked", "challenge_id", "primary_score", "created_at", "id"),
        # A file this team already sent to this challenge (same SHA-256) is answered from its earlier row.
        Index("ix_submissions_file", "challenge_id", "team_id", "file_sha256"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    challenge_id: Mapped[int] = mapped_column(ForeignKey("challenges.id"))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.job_id"), index=True)  # official baselines
    label: Mapped[str] = mapped_column(String(128), default="")  # the entry's name, e.g. the architecture
    description: Mapped[str | None] = mapped_column(Text)  # the entry's own words, at most 2,000 characters
    code_url: Mapped[str | None] = mapped_column(String(512))  # an http(s) address of the entry's code
    file_sha256: Mapped[str] = mapped_column(String(64))
    # The uploaded file itself, for rescoring and provenance; deferred so listings do not load it.
    file_data: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    n_rows: Mapped[int] = mapped_column(Integer)
    primary_score: Mapped[float] = mapped_column(Float)  # the challenge's metric, lower is better
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)  # top-1/top-5 (or mAP) with 95% CIs
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The private part's score, copied from private_scores when the host closes the challenge; NULL until then.
    private_score: Mapped[float | None] = mapped_column(Float)
    private_scores: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Under the Ladder, the public score the team is shown (lower is better, rounded to the threshold), written at
    # insert under the quota's lock; NULL on a plain board, which shows primary_score.
    shown_score: Mapped[float | None] = mapped_column(Float)

    team: Mapped[Team] = relationship(back_populates="submissions")


class PrivateScore(Base):
    """A submission's score on the private part, written with the submission and read only by the gate's role and
    the owner until the challenge closes (leaderboard.parts.publish copies it onto the submission's row)."""

    __tablename__ = "private_scores"

    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), primary_key=True)
    primary_score: Mapped[float] = mapped_column(Float)  # lower is better, as Submission.primary_score
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Phase(Base):
    """A period of a challenge with its own submission rules (leaderboard.phases). A challenge without a row has
    one open-ended phase: its own quota per window."""

    __tablename__ = "phases"
    __table_args__ = (UniqueConstraint("challenge_id", "name", name="uq_phases_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    challenge_id: Mapped[int] = mapped_column(ForeignKey("challenges.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # NULL: until the challenge closes
    quota: Mapped[int] = mapped_column(Integer)  # per rolling window of window_days
    window_days: Mapped[float] = mapped_column(Float)
    per_day: Mapped[int | None] = mapped_column(Integer)  # per UTC day; NULL: no such rule
    total: Mapped[int | None] = mapped_column(Integer)  # in the whole phase; NULL: no such rule
    visibility: Mapped[str] = mapped_column(String(8), default="public")  # public | hidden (scores shown at close)


class FinalSelection(Base):
    """A submission a team marked as final (or, at close, its best public ones when it marked none): what the
    private ranking is made of (leaderboard.final)."""

    __tablename__ = "final_selections"

    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), primary_key=True)
    challenge_id: Mapped[int] = mapped_column(ForeignKey("challenges.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    chosen_by: Mapped[str] = mapped_column(String(8), default="team")  # team | default
    selected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEvent(Base):
    """One line of the append-only audit trail (leaderboard.audit): an upload's outcome, a failed token, an
    admin action. `hash` covers the row's content and `prev_hash`, the hash of the row before it, so an edited
    or deleted row breaks the chain where it was. No foreign key: the trail outlives what it names."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # the chain's position
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # the database server's clock
    actor: Mapped[str] = mapped_column(String(128))  # a team's name, "admin:<user@host>", a client address
    action: Mapped[str] = mapped_column(String(64), index=True)  # e.g. "submission.accepted", "token.revoked"
    challenge_id: Mapped[int | None] = mapped_column(Integer, index=True)
    subject: Mapped[str] = mapped_column(String(256), default="")  # what was acted on, e.g. "submission 42"
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
