"""Near-duplicate entries across teams (issue #15 point 7): a copy with 3% noise is flagged, an independent model of
the same accuracy is not; the host's command lists the flags."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from db.engine import session_scope
from leaderboard.admin import add_admin_commands, run
from leaderboard.challenges import create_challenge, get_challenge
from leaderboard.errors import ChallengeError
from leaderboard.near_duplicates import near_duplicates, pair_statistics
from leaderboard.quota import submit
from leaderboard.tokens import create_team
from workers.datasets import held_test_labels

CLASSES = 10


def model(labels: np.ndarray, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    """Top-1 guesses right on about `accuracy` of the images, wrong ones uniform over the other classes."""
    wrong = (labels + rng.integers(1, CLASSES, len(labels))) % CLASSES
    return np.where(rng.random(len(labels)) < accuracy, labels, wrong)


def noisy_copy(guesses: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    copy = guesses.copy()
    at = rng.random(len(copy)) < share
    copy[at] = rng.integers(0, CLASSES, int(at.sum()))
    return copy


def test_a_noisy_copy_stands_out_and_independent_models_do_not() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, CLASSES, 5000)
    a = model(labels, 0.6, rng)
    copy, independent = noisy_copy(a, 0.03, rng), model(labels, 0.6, rng)
    agreement, _, _, _, excess, z = pair_statistics(a, copy, labels, CLASSES)
    assert excess > 0.9 and z > 50 and agreement > 0.95
    agreement, _, _, chance, excess, z = pair_statistics(a, independent, labels, CLASSES)
    assert abs(excess) < 0.05 and abs(z) < 4 and chance == pytest.approx(1 / 9, abs=0.01)
    # Agreement alone would mislead: two strong independent models agree on most images.
    strong_a, strong_b = model(labels, 0.95, rng), model(labels, 0.95, rng)
    agreement, *_, excess, z = pair_statistics(strong_a, strong_b, labels, CLASSES)
    assert agreement > 0.85 and abs(excess) < 0.1
    # Two independent models that both confuse each class with one neighbour give the same wrong answer every
    # time: their confusions explain it, so it is not flagged.
    neighbour = (labels + 1) % CLASSES
    one = np.where(rng.random(len(labels)) < 0.7, labels, neighbour)
    two = np.where(rng.random(len(labels)) < 0.7, labels, neighbour)
    *_, same, chance, excess, z = pair_statistics(one, two, labels, CLASSES)
    assert same == 1.0 and chance == pytest.approx(1.0) and excess < 0.1


OPTIONS = {"num_classes": CLASSES, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 40}


def as_file(ids: list[str], top1: np.ndarray) -> bytes:
    return ("image_id,pred_1\n" + "\n".join(f"{i},{g}" for i, g in zip(ids, top1)) + "\n").encode()


def test_the_host_sees_the_copied_pair_flagged(db_url: str, capsys) -> None:
    create_challenge(db_url, "dup", "synthetic", OPTIONS)
    truth = held_test_labels("synthetic", OPTIONS)
    ids, labels = list(truth), np.array(list(truth.values()))
    rng = np.random.default_rng(1)
    a = model(labels, 0.6, rng)
    files = {"alpha": a, "alpha-too": noisy_copy(a, 0.03, rng), "gamma": model(labels, 0.6, rng),
             "delta": model(labels, 0.6, rng)}
    with session_scope(db_url) as session:
        tokens = {name: create_team(session, name) for name in files}
    for name, top1 in files.items():
        submit(db_url, tokens[name], "dup", as_file(ids, top1), "p.csv")
    with session_scope(db_url) as session:
        pairs = near_duplicates(session, get_challenge(session, "dup"))
        flagged = [{p.team_a, p.team_b} for p in pairs if p.flagged]
        assert flagged == [{"alpha", "alpha-too"}] and len(pairs) == 6
        assert pairs[0].excess > 0.9 and max(p.excess for p in pairs[1:]) < 0.3
        with pytest.raises(ChallengeError, match="threshold"):
            near_duplicates(session, get_challenge(session, "dup"), threshold=1.5)
    parser = argparse.ArgumentParser()
    add_admin_commands(parser)
    assert run(parser.parse_args(["near-duplicates", "dup", "--db", db_url])) == 0
    out = capsys.readouterr().out
    assert "1 of 6 pairs flagged" in out and "FLAG  alpha #" in out and "gamma" not in out
