"""The orchestrator's own runs enter the challenge through the same scorer as every team.

They are submitted as an official baseline team, which the rate limit does not bind, so that
every test score on the site comes from one code path (ARCHITECTURE.md, data flow).

The prediction file is the driver's own path, <storage root>/<the job's folder name>/predictions.csv, read by
the rules of the job's log (orchestrator.scheduler.read_job_bytes): inside the root once symlinks and `..` are
resolved, a regular file, no larger than an upload may be. A path in a worker's result is never opened.

Where the challenge has a participant kit, the job predicted on it (the campaign sets JobSpec.kit), so the file
is keyed by the kit's ids, as every team's is. With a gate configured ($CONVBENCH_GATE_URL, and the official
team's token in $CONVBENCH_BASELINE_TOKEN: in the environment, never on a command line) the file goes through
the gate's HTTP API like any team's; without one (a local SQLite campaign) it is scored in process by the same
validation, scorer and quota code (leaderboard.quota.submit), which the gate runs too.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from db.engine import session_scope
from db.schema import Team
from leaderboard import gate_client
from leaderboard.challenges import find_challenge
from leaderboard.errors import LeaderboardError
from leaderboard.quota import SubmitResult, submit
from leaderboard.submissions import MAX_BYTES
from leaderboard.tokens import create_team
from orchestrator.scheduler import PREDICTIONS_FILE, job_file, read_job_bytes
from workers.jobs import JobSpec

BASELINE_TEAM = "convbench baselines"
GATE_URL_ENV = "CONVBENCH_GATE_URL"  # the submission gate's base URL; unset: score in process
BASELINE_TOKEN_ENV = "CONVBENCH_BASELINE_TOKEN"  # the official baseline team's token, for the gate
log = logging.getLogger("convbench.baselines")


def baseline_team(url: str) -> Team:
    with session_scope(url) as s:
        team = s.scalar(select(Team).where(Team.name == BASELINE_TEAM))
        if team is None:
            create_team(s, BASELINE_TEAM, official=True)  # nobody needs its token: the driver submits directly
            s.flush()
            team = s.scalar(select(Team).where(Team.name == BASELINE_TEAM))
        return team


def submit_through_gate(server: str, slug: str, data: bytes, spec: JobSpec) -> dict[str, Any] | None:
    """The run's predictions submitted over HTTP as the official baseline team; the gate's answer, or None."""
    token = os.environ.get(BASELINE_TOKEN_ENV, "").strip()
    if not token:
        log.error("baseline submission of %s skipped: %s is set but %s (the official team's token) is not",
                  spec.job_id, GATE_URL_ENV, BASELINE_TOKEN_ENV)
        return None
    # A refusal or an unreachable gate raises a LeaderboardError (gate_client), logged by the caller as any
    # rejected baseline: the run's own row is safe either way.
    return gate_client.submit(server, token, slug, data, PREDICTIONS_FILE, name=spec.arch,
                              description=f"convbench baseline: run {spec.job_id}", run_id=spec.job_id)


def submit_baseline(url: str, spec: JobSpec, root: str | Path) -> SubmitResult | dict[str, Any] | None:
    """Scores the run's test predictions, read from the job's folder under the storage `root`, if a challenge is
    open on its dataset; None if none is, or if the job left no prediction file there that may be read.

    Through the gate when $CONVBENCH_GATE_URL names one (its JSON answer), else in process (a SubmitResult)."""
    lexical = Path(root).expanduser().resolve() / spec.folder.name / PREDICTIONS_FILE
    if not os.path.lexists(lexical):
        return None
    if job_file(root, spec, PREDICTIONS_FILE) is None:
        log.warning("baseline submission of %s skipped: %s resolves outside the storage root", spec.job_id, lexical)
        return None
    gate = os.environ.get(GATE_URL_ENV, "").strip()
    try:
        with session_scope(url) as s:
            challenge = find_challenge(s, spec.dataset, spec.dataset_options)
            slug = challenge.slug if challenge else None
        if slug is None:
            return None
        data = read_job_bytes(root, spec, PREDICTIONS_FILE, MAX_BYTES)
        if data is None:
            log.warning("baseline submission of %s skipped: %s is not a regular file inside the storage root of "
                        "at most %d bytes", spec.job_id, lexical, MAX_BYTES)
            return None
        if gate:
            return submit_through_gate(gate, slug, data, spec)
        return submit(url, baseline_team(url), slug, data, PREDICTIONS_FILE, label=spec.arch, run_id=spec.job_id)
    except LeaderboardError as exc:
        # The run's own result is safe in the database; a bad prediction file is this run's problem only.
        log.error("baseline submission of %s rejected%s: %s", spec.job_id,
                  f" through the gate {gate}" if gate else "", exc)
    except DBAPIError as exc:
        # On PostgreSQL the runners' role may not read teams or held labels (python -m db grant): scoring is
        # then the site's job, e.g. `python -m leaderboard admin submit` as the site role.
        log.warning("baseline submission of %s skipped: this database role cannot score (%s)",
                    spec.job_id, exc.orig.__class__.__name__ if exc.orig else exc)
    return None
