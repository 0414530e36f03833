"""The Ladder (Blum and Hardt, "The Ladder: A Reliable Leaderboard for Machine Learning Competitions", ICML 2015).

A team that sees its exact public score after every upload can climb it by probing: flip some labels,
keep the file when the score goes up. Its public score then rises while its private one does not. The
Ladder shows a team a new public score only when an upload beats the team's shown best by more than a
threshold η, and then rounded to a multiple of η; otherwise the shown score stays. A small change to a
file then tells the team nothing, and the paper bounds the public set's overfitting by O(log(n·k)^(1/3)/n^(1/3))
for n images and k uploads (with η of about n^(-1/3): 0.01 for 10^6 images).

Scores here are lower-is-better (leaderboard.scoring's primary_score convention); `higher_is_better=True`
applies the same rule to an accuracy. The simulation behind the claim is tests/test_ladder.py.
"""
from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

DEFAULT_THRESHOLD = 0.01


def _decimals(threshold: float) -> int:
    """How many decimals a multiple of `threshold` needs (0.01 -> 2, 0.005 -> 3, 0.5 -> 1)."""
    return max(0, -Decimal(repr(threshold)).normalize().as_tuple().exponent)  # type: ignore[operator]


def round_to(value: float, threshold: float) -> float:
    """`value` rounded to the nearest multiple of `threshold`, written with the threshold's decimals."""
    return round(round(value / threshold) * threshold, _decimals(threshold))


def ladder_score(previous_best: float | None, new_score: float, threshold: float = DEFAULT_THRESHOLD,
                 higher_is_better: bool = False) -> float:
    """The public score a team is shown after an upload scoring `new_score`.

    `previous_best`: the score the team was shown before (None: its first upload). The shown score moves
    only when the new one beats it by more than `threshold`, and then to the new score rounded to a
    multiple of the threshold; otherwise it stays `previous_best`.
    """
    if not threshold > 0:
        raise ValueError(f"the Ladder's threshold must be positive, got {threshold}")
    if previous_best is None:
        return round_to(new_score, threshold)
    gain = new_score - previous_best if higher_is_better else previous_best - new_score
    return round_to(new_score, threshold) if gain > threshold else previous_best


def shown_scores(scores: Iterable[float], threshold: float = DEFAULT_THRESHOLD,
                 higher_is_better: bool = False) -> list[float]:
    """The score shown after each of a team's uploads, in upload order: the board's public score is the last."""
    shown: list[float] = []
    best: float | None = None
    for score in scores:
        best = ladder_score(best, score, threshold, higher_is_better)
        shown.append(best)
    return shown
