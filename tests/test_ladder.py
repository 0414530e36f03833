"""The Ladder (issue #15 point 5): the rule, and an adaptive attacker who climbs a plain board but not the Ladder."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from leaderboard.ladder import ladder_score, round_to, shown_scores


def test_the_shown_score_moves_only_past_the_threshold_and_is_rounded() -> None:
    assert ladder_score(None, 0.23456) == 0.23
    assert ladder_score(0.23, 0.225) == 0.23  # better by 0.005 < 0.01: unchanged
    assert ladder_score(0.23, 0.2201) == 0.23  # by 0.0099: unchanged
    assert ladder_score(0.23, 0.2149) == 0.21  # by 0.0151: shown, rounded to 0.01
    assert ladder_score(0.23, 0.40) == 0.23  # worse: unchanged
    assert ladder_score(0.5, 0.5149, 0.005, higher_is_better=True) == 0.515
    assert ladder_score(0.5, 0.5049, 0.005, higher_is_better=True) == 0.5
    assert round_to(0.3333, 0.005) == 0.335 and round_to(0.123, 0.5) == 0.0
    assert shown_scores([0.30, 0.295, 0.28, 0.281, 0.26]) == [0.3, 0.3, 0.28, 0.28, 0.26]
    with pytest.raises(ValueError, match="threshold must be positive"):
        ladder_score(0.2, 0.1, 0.0)


@dataclass
class Attack:
    public_gain: float  # points of public accuracy the attacker's kept file gained over its first
    private_gain: float
    shown_gain: float  # points the board showed it gaining


def attack(ladder: bool, submissions: int = 700, n_public: int = 2000, flips: int = 30, seed: int = 0,
           threshold: float = 0.01) -> Attack:
    """Blum and Hardt's kind of adversary on binary labels it does not know: start from random labels; each
    step flip `flips` random labels of a copy of the best file and keep it when the *shown* public score
    improves. Its labels carry no information, so every point it gains on the public part is overfitting."""
    rng = np.random.default_rng(seed)
    public, private = rng.integers(0, 2, n_public), rng.integers(0, 2, n_public)
    truth = np.concatenate([public, private])
    best = rng.integers(0, 2, 2 * n_public)

    def public_error(labels: np.ndarray) -> float:
        return float(np.mean(labels[:n_public] != public))

    shown = first_shown = ladder_score(None, public_error(best), threshold) if ladder else public_error(best)
    first = best.copy()
    for _ in range(submissions - 1):
        candidate = best.copy()
        at = rng.choice(2 * n_public, flips, replace=False)
        candidate[at] ^= 1
        error = public_error(candidate)
        new_shown = ladder_score(shown, error, threshold) if ladder else error
        if new_shown < shown:
            best, shown = candidate, new_shown

    def accuracy(labels: np.ndarray, part: slice) -> float:
        return float(np.mean(labels[part] == truth[part]))

    pub, priv = slice(0, n_public), slice(n_public, None)
    return Attack(100 * (accuracy(best, pub) - accuracy(first, pub)),
                  100 * (accuracy(best, priv) - accuracy(first, priv)), 100 * (first_shown - shown))


def test_an_adaptive_attacker_climbs_a_plain_board_but_not_the_ladder() -> None:
    plain, laddered = attack(ladder=False), attack(ladder=True)
    assert plain.public_gain >= 10, plain  # a board that shows the exact score is overfit by probing
    assert abs(plain.private_gain) < 5, plain  # ... and none of it is real
    assert laddered.public_gain < 2 and laddered.shown_gain < 2, laddered
    # The same attacker, the same number of uploads, another seed: the same verdict.
    assert attack(ladder=False, seed=1).public_gain >= 10 and attack(ladder=True, seed=1).public_gain < 2


def test_the_attack_is_deterministic() -> None:
    assert attack(ladder=False, submissions=200) == attack(ladder=False, submissions=200)
