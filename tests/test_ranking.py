"""Rank intervals and the compare view (issue #15 point 4): constructed cases whose answer is known, and the
hits of stored submissions agreeing with their stored scores on SQLite and PostgreSQL."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from db.engine import session_scope
from db.schema import Submission, Team
from leaderboard import ranking
from leaderboard.challenges import create_challenge, get_challenge
from leaderboard.errors import ChallengeError
from leaderboard.quota import submit
from leaderboard.tokens import create_team
from workers.datasets import held_test_labels

N = 4000


def base(seed: int = 0, accuracy: float = 0.7, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).random(n) < accuracy


def test_identical_entries_are_tied_with_p_one() -> None:
    a = base()
    result = ranking.compare(a, a.copy())
    assert result.difference == 0 and result.ci == (0.0, 0.0)
    assert result.p_bootstrap == 1.0 and result.p_mcnemar == 1.0 and not result.significant
    table = ranking.rank_intervals(np.stack([a, a]))
    assert table.rank.tolist() == [1, 1] and table.low.tolist() == [1, 1] and table.high.tolist() == [1, 1]
    assert table.tied_with_next.tolist() == [True, False]


def test_an_entry_better_on_many_images_ranks_first_for_sure() -> None:
    b = base()
    a = b.copy()
    wrong = np.flatnonzero(~b)[:400]  # A gets 400 of B's misses right and is never worse: 10 points
    a[wrong] = True
    result = ranking.compare(a, b)
    assert result.difference == pytest.approx(-400 / N)
    assert result.ci[1] < 0 and result.significant
    assert result.p_bootstrap < 0.001 and result.p_mcnemar < 0.001
    assert (result.a_only, result.b_only) == (400, 0)
    table = ranking.rank_intervals(np.stack([b, a, base(seed=1, accuracy=0.2)]))
    assert table.order.tolist() == [1, 0, 2]
    assert (table.low[1], table.high[1]) == (1, 1) and (table.low[0], table.high[0]) == (2, 2)
    assert table.tied_with_next.tolist() == [False, False, False]


def test_close_entries_are_tied_and_a_clear_gap_is_not() -> None:
    a = base(seed=3)
    b = a.copy()
    b[np.flatnonzero(a)[:5]] = False  # 5 images of 4,000: 0.1 points, well inside the noise
    b[np.flatnonzero(~a)[:3]] = True
    c = base(seed=4, accuracy=0.5)
    table = ranking.rank_intervals(np.stack([c, b, a]))
    assert table.order.tolist() == [2, 1, 0]
    assert table.tied_with_next.tolist() == [True, False, False]
    assert table.low[1] == 1 and table.high[2] == 2  # a and b each take rank 1 or 2 ...
    assert (table.low[0], table.high[0]) == (3, 3)  # ... c is third in every replicate
    assert ranking.compare(a, b).p_bootstrap > 0.05


def test_same_seed_same_intervals_and_another_seed_other_draws() -> None:
    rng = np.random.default_rng(7)
    hits = rng.random((12, 1500)) < rng.uniform(0.6, 0.7, size=(12, 1))
    one, two = ranking.rank_intervals(hits, seed=5), ranking.rank_intervals(hits, seed=5)
    for field in ("error", "rank", "low", "high", "order", "tied_with_next"):
        assert np.array_equal(getattr(one, field), getattr(two, field))
    assert ranking.compare(hits[0], hits[1], seed=5) == ranking.compare(hits[0], hits[1], seed=5)
    assert not np.array_equal(ranking.bootstrap_errors(hits, 50, seed=5), ranking.bootstrap_errors(hits, 50, seed=6))


def test_replicates_resample_the_same_images_for_every_entry() -> None:
    """The counts are a multinomial draw of n images, and one replicate scores every entry on the same draw."""
    rng = np.random.default_rng(0)
    hits = rng.random((5, 300)) < 0.6
    errors = ranking.bootstrap_errors(hits, replicates=30, seed=11)
    index = np.random.default_rng(11).integers(0, 300, size=(30, 300))  # replicate_counts' draw for one block
    explicit = 1.0 - hits[:, index].mean(axis=2).T
    np.testing.assert_allclose(errors, explicit, atol=1e-12)
    for block in ranking.replicate_counts(300, 250, seed=2):
        assert (block.sum(axis=1) == 300).all()


def test_mcnemar_without_scipy_is_the_same_number(monkeypatch) -> None:
    with_scipy = [ranking.mcnemar_exact(a, b) for a, b in [(30, 10), (7, 7), (0, 12), (1, 0)]]
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # import now raises ImportError
    without = [ranking.mcnemar_exact(a, b) for a, b in [(30, 10), (7, 7), (0, 12), (1, 0)]]
    np.testing.assert_allclose(with_scipy, without, rtol=1e-9)
    assert with_scipy[1] == 1.0 and with_scipy[0] < 0.01


def test_bad_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="entries x images"):
        ranking.rank_intervals(np.ones(10, dtype=bool))
    with pytest.raises(ChallengeError, match="map50"):
        ranking.top_k_of("map50")


# --- stored submissions -------------------------------------------------------------------------

OPTIONS = {"num_classes": 10, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 60}


def top5_file(labels: dict[str, int], right: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    lines = ["image_id,pred_1,pred_2,pred_3,pred_4,pred_5"]
    for image_id, label in labels.items():
        others = [c for c in rng.permutation(10).tolist() if c != label]
        guesses = [label, *others[:4]] if rng.random() < right else others[:5]
        lines.append(f"{image_id}," + ",".join(map(str, guesses)))
    return ("\n".join(lines) + "\n").encode()


def test_board_intervals_from_stored_files_agree_with_the_stored_scores(db_url: str) -> None:
    create_challenge(db_url, "rank", "synthetic", OPTIONS, public_fraction=1.0)
    labels = held_test_labels("synthetic", OPTIONS)
    with session_scope(db_url) as session:
        create_team(session, "host", official=True)
    with session_scope(db_url) as session:
        team = session.query(Team).one()
    ids = [submit(db_url, team, "rank", top5_file(labels, right, seed), "p.csv").submission_id
           for seed, right in enumerate([0.9, 0.3, 0.88])]
    ranking.forget_hits()
    with session_scope(db_url) as session:
        challenge = get_challenge(session, "rank")
        hits = ranking.challenge_hits(session, challenge, ids)
        assert hits.shape == (3, len(labels))
        stored = [session.get(Submission, i).primary_score for i in ids]
        np.testing.assert_allclose(1.0 - hits.mean(axis=1), stored)  # top5_err, the challenge's metric
        top1 = ranking.challenge_hits(session, challenge, ids, k=1)
        assert (top1 <= hits).all()
        board = ranking.board_intervals(session, challenge, ids)
        assert [e.submission_id for e in board] == [ids[0], ids[2], ids[1]]
        assert board[0].low == 1 and board[-1].low == board[-1].high == 3
        assert board[0].tied_with_next and not board[1].tied_with_next  # 90% and 88% on 600 images: not different
        again = ranking.board_intervals(session, challenge, ids)  # from the cache: the same answer
        assert again == board
        public = ranking.challenge_hits(session, challenge, ids, images=np.arange(0, len(labels), 2))
        assert public.shape == (3, len(labels) // 2)
        comparison = ranking.compare_submissions(session, challenge, ids[0], ids[1])
        assert comparison.difference < 0 and comparison.p_mcnemar < 0.001
        with pytest.raises(ChallengeError, match="no submission 999"):
            ranking.challenge_hits(session, challenge, [ids[0], 999])
