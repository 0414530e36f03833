"""Near-duplicate entries across teams (issue #15 point 7): for the host only, never on a page.

The 2015 pattern: one group submits through several accounts, each upload a variant of one model, to
multiply its quota. Two such files agree far more than two independent models would. Agreement on
images both get right says nothing (any two good models agree there: it follows from their accuracies);
the evidence is in the images both get wrong. Two independent models wrong on the same image give the same
wrong answer only by chance, about the product of their wrong-guess marginals over the classes; variants of
one model mostly give the same one.

For each pair of teams (their best submissions, or every pair of their submissions):

- `same_wrong`: of the images both get wrong, the fraction with the same top-1 guess;
- `chance`: what the pair's confusions give by chance: on an image of class y, the sum over guesses c of
  q_a(c|y) q_b(c|y), each file's share of its wrong guesses on class y that are c; averaged over the images;
- `excess`: (same_wrong - chance) / (1 - chance), 0 for independent errors, 1 for identical ones;
- `z`: the same-answer count's distance from chance in binomial standard deviations.

A pair is flagged when its excess is at least the host's threshold and its z at least Z_MIN (enough shared
errors to tell). Independently trained real networks do share confusions (two dog breeds): their excess is
well above 0, which is why the default threshold is high and the host may set it.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.schema import Challenge, Submission, Team
from leaderboard import scoring
from leaderboard.errors import ChallengeError

THRESHOLD = 0.8
Z_MIN = 5.0


@dataclass(frozen=True)
class Pair:
    team_a: str
    team_b: str
    submission_a: int
    submission_b: int
    agreement: float  # top-1 guesses equal, over all images
    both_wrong: int  # images both get wrong (top-1)
    same_wrong: float  # of those, the fraction with the same guess
    chance: float  # the fraction expected by chance from the two files' confusions
    excess: float  # (same_wrong - chance) / (1 - chance)
    z: float
    flagged: bool


def _confusion(labels: np.ndarray, guesses: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true classes; each row the distribution of the wrong guesses on that class (zeros if none)."""
    counts = np.bincount(labels * n_classes + guesses, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def pair_statistics(guess_a: np.ndarray, guess_b: np.ndarray, labels: np.ndarray,
                    n_classes: int) -> tuple[float, int, float, float, float, float]:
    """agreement, both_wrong, same_wrong, chance, excess, z of two top-1 guess vectors against the labels."""
    wrong_a, wrong_b = guess_a != labels, guess_b != labels
    both = wrong_a & wrong_b
    n_both = int(both.sum())
    agreement = float(np.mean(guess_a == guess_b))
    if n_both == 0:
        return agreement, 0, 0.0, 0.0, 0.0, 0.0
    same = int((guess_a[both] == guess_b[both]).sum())
    # Each file's wrong guesses per true class (its confusion rows): the chance that two independent errors on an
    # image of class y coincide is the dot product of the two rows of y. Confusions that both models make on their
    # own (two similar classes) are then explained, not flagged.
    rows_a, rows_b = _confusion(labels[wrong_a], guess_a[wrong_a], n_classes), _confusion(
        labels[wrong_b], guess_b[wrong_b], n_classes)
    per_class = (rows_a * rows_b).sum(axis=1)
    p = per_class[labels[both]]
    chance = float(p.mean())
    same_wrong = same / n_both
    # When the confusions already explain every shared error (chance 1), nothing is left to be in excess.
    excess = (same_wrong - chance) / (1 - chance) if chance < 1 - 1e-9 else 0.0
    z = (same - p.sum()) / math.sqrt(max(float((p * (1 - p)).sum()), 1e-12))  # Poisson-binomial
    return agreement, n_both, same_wrong, chance, excess, z


def near_duplicates(session: Session, challenge: Challenge, threshold: float = THRESHOLD, z_min: float = Z_MIN,
                    every_submission: bool = False, with_official: bool = False) -> list[Pair]:
    """Every pair of teams on `challenge`, most similar first; `flagged` marks those at or past the threshold.

    By default each team's best submission (its board entry); `every_submission` compares every submission of
    one team with every one of another (a variant is not always a team's best). Official teams (the benchmark's
    own baselines) are left out unless `with_official`.
    """
    if challenge.task != "classification":
        raise ChallengeError(f"near-duplicate detection compares top-1 guesses: {challenge.slug!r} is "
                             f"{challenge.task}")
    if not 0 < threshold <= 1:
        raise ChallengeError(f"the threshold is a fraction in (0, 1], got {threshold}")
    query = (select(Submission, Team.name).join(Team, Submission.team_id == Team.id)
             .where(Submission.challenge_id == challenge.id)
             .order_by(Submission.team_id, Submission.primary_score, Submission.created_at, Submission.id))
    if not with_official:
        query = query.where(Team.official.is_(False))
    entries: list[tuple[int, str, Submission]] = []
    for row, team in session.execute(query):
        if every_submission or not entries or entries[-1][0] != row.team_id:
            entries.append((row.team_id, team, row))
    parsed = [scoring.stored_classifications(session, challenge, row) for _, _, row in entries]
    guesses = [g[:, 0] for g, _ in parsed]
    labels = parsed[0][1] if parsed else np.zeros(0, np.int64)  # stays in this function
    pairs = []
    for (i, (team_a, name_a, a)), (j, (team_b, name_b, b)) in itertools.combinations(enumerate(entries), 2):
        if team_a == team_b:
            continue
        agreement, n_both, same_wrong, chance, excess, z = pair_statistics(guesses[i], guesses[j], labels,
                                                                          len(challenge.class_names))
        pairs.append(Pair(name_a, name_b, a.id, b.id, agreement, n_both, same_wrong, chance, excess, z,
                          excess >= threshold and z >= z_min))
    return sorted(pairs, key=lambda p: (-p.excess, p.submission_a, p.submission_b))
