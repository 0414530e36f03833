"""The orchestrator's own runs enter the challenge through the same scorer as every team.

They are submitted as an official baseline team, which the rate limit does not bind, so that
every test score on the site comes from one code path (ARCHITECTURE.md, data flow).

The prediction file is the driver's own path, <storage root>/<the job's folder name>/predictions.csv, read by
the rules of the job's log (orchestrator.scheduler.read_job_bytes): inside the root once symlinks and `..` are
resolved, a regular file, no larger than an upload may be. A path in a worker's result is never opened.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from db.engine import session_scope
from db.schema import Team
from leaderboard.challenges import find_challenge
from leaderboard.errors import LeaderboardError
from leaderboard.quota import SubmitResult, submit
from leaderboard.submissions import MAX_BYTES
from leaderboard.tokens import create_team
from orchestrator.scheduler import PREDICTIONS_FILE, job_file, read_job_bytes
from workers.jobs import JobSpec

BASELINE_TEAM = "convbench baselines"
log = logging.getLogger("convbench.baselines")


def baseline_team(url: str) -> Team:
    with session_scope(url) as s:
        team = s.scalar(select(Team).where(Team.name == BASELINE_TEAM))
        if team is None:
            create_team(s, BASELINE_TEAM, official=True)  # nobody needs its token: the driver submits directly
            s.flush()
            team = s.scalar(select(Team).where(Team.name == BASELINE_TEAM))
        return team


def submit_baseline(url: str, spec: JobSpec, root: str | Path) -> SubmitResult | None:
    """Scores the run's test predictions, read from the job's folder under the storage `root`, if a challenge is
    open on its test split; None if none is, or if the job left no prediction file there that may be read."""
    lexical = Path(root).expanduser().resolve() / spec.folder.name / PREDICTIONS_FILE
    if not os.path.lexists(lexical):
        return None
    if job_file(root, spec, PREDICTIONS_FILE) is None:
        log.warning("baseline submission of %s skipped: %s resolves outside the storage root", spec.job_id, lexical)
        return None
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
        return submit(url, baseline_team(url), slug, data, PREDICTIONS_FILE, label=spec.arch, run_id=spec.job_id)
    except LeaderboardError as exc:
        # The run's own result is safe in the database; a bad prediction file is this run's problem only.
        log.error("baseline submission of %s rejected: %s", spec.job_id, exc)
    except DBAPIError as exc:
        # On PostgreSQL the runners' role may not read teams or held labels (python -m db grant): scoring is
        # then the site's job, e.g. `python -m leaderboard admin submit` as the site role.
        log.warning("baseline submission of %s skipped: this database role cannot score (%s)",
                    spec.job_id, exc.orig.__class__.__name__ if exc.orig else exc)
    return None
