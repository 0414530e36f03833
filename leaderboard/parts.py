"""The public and private parts of a challenge's test set (issue #15, point 1).

At creation the test images are split once, stratified by class (detection: by an image's first box's class),
with a seed drawn from `secrets` and kept nowhere: only `held_labels.part` says which image is where, and only
the gate's role reads that table (db/roles.py). Every submission is scored on both parts; the public score is
the one the board, the exports and the gate's answers show (Submission.primary_score), the private one waits in
`private_scores`, which the site's role cannot read, until the host closes the challenge and `publish` copies it
onto the submissions' rows. The kit is written from kit_images alone, so it cannot tell the parts apart.

The split is systematic over the images ordered by (class, random key): image i is public when
floor((i + 1) f + u) > floor(i f + u), with u a random offset. That puts exactly floor(n f + u) images in the
public part and every class's share within one image of f.
"""
from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.schema import Challenge, PrivateScore, Submission
from leaderboard.errors import ChallengeError

PUBLIC, PRIVATE = "public", "private"
DEFAULT_FRACTION = 0.5


def check_fraction(fraction: float) -> float:
    """`fraction` as a float in (0, 1]; a ChallengeError that names it otherwise."""
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise ChallengeError(f"public fraction must be a number in (0, 1], got {fraction!r}") from None
    if not 0.0 < value <= 1.0:
        raise ChallengeError(f"public fraction must be in (0, 1] (1: no private part), got {value:g}")
    return value


def stratum(label: Any, task: str) -> int:
    """The class an image is stratified by: its label, or its first box's class (-1: an image without boxes)."""
    if task == "classification":
        return int(label)
    return int(label[0][4]) if label else -1


def split(labels: Mapping[str, Any], task: str, fraction: float, seed: int | None = None) -> set[str]:
    """The ids of the private part. `seed`: None draws a fresh secret one (a test may fix it)."""
    fraction = check_fraction(fraction)
    if fraction == 1.0 or not labels:
        return set()
    rng = np.random.default_rng(secrets.randbits(64) if seed is None else seed)
    ids = list(labels)
    classes = np.array([stratum(labels[i], task) for i in ids], dtype=np.int64)
    order = np.lexsort((rng.random(len(ids)), classes))  # by class, in a random order within each
    offset = rng.random()
    steps = np.floor(np.arange(len(ids) + 1) * fraction + offset)
    public = np.diff(steps) > 0  # per position in `order`
    private = {ids[i] for i in order[~public]}
    if len(private) == len(ids):
        raise ChallengeError(f"public fraction {fraction:g} of {len(ids)} test images leaves the public part empty")
    return private


def publish(session: Session, challenge: Challenge) -> int:
    """Copy every private score of `challenge` onto its submission's row, where the site can read it (at close);
    returns how many were copied."""
    rows = session.execute(select(Submission, PrivateScore).join(PrivateScore, PrivateScore.submission_id == Submission.id)
                           .where(Submission.challenge_id == challenge.id)).all()
    for submission, private in rows:
        submission.private_score, submission.private_scores = private.primary_score, dict(private.scores)
    session.flush()
    return len(rows)
