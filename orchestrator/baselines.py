"""The orchestrator's own runs enter the challenge through the same scorer as every team.

They are submitted as an official baseline team, which the rate limit does not bind, so that
every test score on the site comes from one code path (DESIGN, data flow).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from db.engine import session_scope
from db.schema import Team
from leaderboard.challenges import find_challenge
from leaderboard.errors import LeaderboardError
from leaderboard.quota import SubmitResult, submit
from leaderboard.tokens import create_team
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


def submit_baseline(url: str, spec: JobSpec, result: dict[str, Any]) -> SubmitResult | None:
    """Scores the run's test predictions if a challenge is open on its test split; None if none is."""
    predictions = result.get("predictions")
    if not predictions or not Path(predictions).is_file():
        return None
    try:
        with session_scope(url) as s:
            challenge = find_challenge(s, spec.dataset, spec.dataset_options)
            slug = challenge.slug if challenge else None
        if slug is None:
            return None
        return submit(url, baseline_team(url), slug, Path(predictions).read_bytes(), Path(predictions).name,
                      label=spec.arch, run_id=spec.job_id)
    except LeaderboardError as exc:
        # The run's own result is safe in the database; a bad prediction file is this run's problem only.
        log.error("baseline submission of %s rejected: %s", spec.job_id, exc)
    except DBAPIError as exc:
        # On PostgreSQL the runners' role may not read teams or held labels (python -m db grant): scoring is
        # then the site's job, e.g. `python -m leaderboard admin submit` as the site role.
        log.warning("baseline submission of %s skipped: this database role cannot score (%s)",
                    spec.job_id, exc.orig.__class__.__name__ if exc.orig else exc)
    return None
