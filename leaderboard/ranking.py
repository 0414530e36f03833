"""Rank intervals and pairwise comparisons from per-image correctness (issue #15, point 4).

A board that ranks by point estimates calls two entries different when they are not. Here every entry's
rank gets a 95% interval from a *paired* bootstrap over test images: one replicate resamples the images
once and every entry is scored on that same resample, so the noise that two entries share (an easy or
hard draw of images) cancels in their difference, as it does in the question "is A better than B?".

The evidence is a hits matrix, entries x images (bool): whether an entry's top-k guesses hold the image's
label. `challenge_hits` builds it from the stored files and the held labels, in the server process;
everything else here is arithmetic on that matrix and never sees a label.

One replicate's image counts (how often each image was drawn) are a row of W; the entries' correct
counts on all replicates at once are then one matrix product, hits (E x N) @ W.T (N x B), exact in
float32 up to 2^24 images. 100 entries x 50,000 images x 1,000 replicates: bench/ranking_speed.py.

Classification only: a replicate of a detection challenge would need mAP recomputed on the resample
(a COCO evaluation per replicate), which is not done here.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.schema import Challenge, Submission
from leaderboard import scoring
from leaderboard.errors import ChallengeError
from workers.metric_registry import first_hit_rank

REPLICATES = 1000
SEED = 0
LEVEL = 0.95
CHUNK = 100  # replicates drawn at once: W is CHUNK x N float32 (20 MB for 50,000 images)


# --- the bootstrap draws ---------------------------------------------------------------------------------

def replicate_counts(n_images: int, replicates: int = REPLICATES, seed: int = SEED,
                     chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Yield blocks of bootstrap image counts (rows: replicates, columns: images; each row sums to n_images).

    Drawn as integer indices and counted row by row (a row's counts fit in cache; one bincount over the
    block is 2x slower, numpy's multinomial over 50,000 categories slower still). The same seed gives the
    same blocks whatever the caller does with them.
    """
    rng = np.random.default_rng(seed)
    for start in range(0, replicates, chunk):
        rows = min(chunk, replicates - start)
        index = rng.integers(0, n_images, size=(rows, n_images))
        counts = np.empty((rows, n_images), dtype=np.float32)
        for r in range(rows):
            counts[r] = np.bincount(index[r], minlength=n_images)
        yield counts


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """BLAS on one thread: on a shared machine its spinning threads made the product 10x slower (0.1 s -> 1-5 s
    per 100 replicates), and a server process should not take every core for one page."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn's dependency; without it BLAS keeps its own threads
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def bootstrap_errors(hits: np.ndarray, replicates: int = REPLICATES, seed: int = SEED) -> np.ndarray:
    """Errors of every entry on every replicate (replicates x entries), all entries on the same resamples."""
    hits = _hits_matrix(hits)
    n = hits.shape[1]
    by_image = np.ascontiguousarray(hits.T, dtype=np.float32)  # images x entries
    with _one_blas_thread():
        blocks = [1.0 - (counts @ by_image).astype(np.float64) / n for counts in replicate_counts(n, replicates, seed)]
    return np.concatenate(blocks) if blocks else np.empty((0, hits.shape[0]))


def _hits_matrix(hits: np.ndarray) -> np.ndarray:
    hits = np.asarray(hits)
    if hits.ndim != 2 or hits.shape[1] == 0:
        raise ValueError(f"hits must be entries x images with at least one image, got shape {hits.shape}")
    if hits.shape[1] >= 1 << 24:
        raise ValueError(f"{hits.shape[1]} images: float32 counts are exact only below 2^24")
    return hits.astype(bool, copy=False)


# --- rank intervals --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ranking:
    """Entries in the order given (index i is the caller's entry i); `order` lists them best first."""

    error: np.ndarray  # observed error per entry
    rank: np.ndarray  # observed competition rank ("1224"): 1 + entries with a strictly lower error
    low: np.ndarray  # the rank interval's ends over the replicates
    high: np.ndarray
    order: np.ndarray  # entry indices, best first (error, then the caller's order)
    tied_with_next: np.ndarray  # per position in `order`: its difference from the next is not significant
    level: float
    replicates: int
    seed: int


def competition_ranks(errors: np.ndarray) -> np.ndarray:
    """1 + the number of entries with a strictly lower error, along the last axis (equal errors share a rank)."""
    return 1 + (errors[..., None, :] < errors[..., :, None]).sum(axis=-1)


def _interval(values: np.ndarray, level: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    # inverted_cdf: the interval's ends are values that occurred (whole ranks, differences actually drawn).
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail], axis=axis, method="inverted_cdf")
    return low, high


def rank_intervals(hits: np.ndarray, replicates: int = REPLICATES, seed: int = SEED, level: float = LEVEL) -> Ranking:
    """Each entry's rank and its `level` rank interval from a paired bootstrap over images.

    `tied_with_next[p]` says that the entry at position p of the observed order and the one after it are
    not significantly different: the `level` interval of their paired difference in error includes 0.
    """
    hits = _hits_matrix(hits)
    error = 1.0 - hits.mean(axis=1)
    draws = bootstrap_errors(hits, replicates, seed)  # replicates x entries
    ranks = competition_ranks(draws)
    low, high = _interval(ranks, level)
    order = np.lexsort((np.arange(len(error)), error))
    diff_low, diff_high = _interval(draws[:, order[:-1]] - draws[:, order[1:]], level)
    tied = np.append((diff_low <= 0) & (diff_high >= 0), False)
    return Ranking(error, competition_ranks(error), low.astype(int), high.astype(int), order, tied, level,
                   replicates, seed)


# --- is A better than B? ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    error_a: float
    error_b: float
    difference: float  # error_a - error_b: negative when A is better
    ci: tuple[float, float]  # the paired bootstrap interval of the difference
    p_bootstrap: float  # two-sided; 0.0 means below 1 / replicates
    p_mcnemar: float  # exact McNemar (binomial test on the discordant images), two-sided
    a_only: int  # images A gets right and B wrong
    b_only: int  # images B gets right and A wrong
    n_images: int
    level: float
    replicates: int
    seed: int

    @property
    def significant(self) -> bool:
        return not self.ci[0] <= 0 <= self.ci[1]


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: the discordant images under H0 split as Binomial(n, 1/2)."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    try:
        from scipy.stats import binomtest
    except ImportError:  # the same number from the binomial coefficients: 2 x the smaller tail, at most 1
        tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1)) / 2.0 ** n
        return min(1.0, 2 * tail)
    return float(binomtest(a_only, n, 0.5).pvalue)


def compare(hits_a: np.ndarray, hits_b: np.ndarray, replicates: int = REPLICATES, seed: int = SEED,
            level: float = LEVEL) -> Comparison:
    """A against B on the same images: the paired difference in error, its interval and two p-values.

    The bootstrap p-value is the share of replicates whose difference, shifted to the null (minus the
    observed one), lies at least as far from 0 as the observed difference.
    """
    both = _hits_matrix(np.stack([np.asarray(hits_a), np.asarray(hits_b)]))
    error = 1.0 - both.mean(axis=1)
    draws = bootstrap_errors(both, replicates, seed)
    diffs = draws[:, 0] - draws[:, 1]
    observed = float(error[0] - error[1])
    low, high = _interval(diffs, level)
    # The tolerance: float32 counts make equal differences differ in the last bits.
    p_boot = float(np.mean(np.abs(diffs - observed) >= abs(observed) - 1e-12))
    a_only = int((both[0] & ~both[1]).sum())
    b_only = int((both[1] & ~both[0]).sum())
    return Comparison(float(error[0]), float(error[1]), observed, (float(low), float(high)), p_boot,
                      mcnemar_exact(a_only, b_only), a_only, b_only, both.shape[1], level, replicates, seed)


# --- the hits of stored submissions (server side: reads the held labels) ----------------------------------

_HITS: OrderedDict[tuple[str, int, str, int], np.ndarray] = OrderedDict()
_HITS_LOCK = threading.Lock()
_HITS_KEPT = 2000  # packed: 2 x 6 KB per 50,000-image entry


def top_k_of(metric: str) -> int:
    """The k of a top-k error metric ("top5_err" -> 5); a ChallengeError for any other metric."""
    if metric.startswith("top") and metric.endswith("_err") and metric[3:-4].isdigit():
        return int(metric[3:-4])
    raise ChallengeError(f"rank intervals need a top-k error; the challenge ranks by {metric!r} "
                         f"(detection: not supported)")


def _entry_hits(session: Session, challenge: Challenge, row: Submission, k: int) -> np.ndarray:
    """One stored submission's hits, parsed and checked once per process (the file never changes)."""
    key = (session.get_bind().engine.url.render_as_string(hide_password=True), row.id, row.file_sha256, k)
    with _HITS_LOCK:
        if key in _HITS:
            _HITS.move_to_end(key)
            packed = _HITS[key]
            return np.unpackbits(packed[8:], count=int(packed[:8].view(np.uint64)[0])).astype(bool)
    guesses, labels = scoring.stored_classifications(session, challenge, row)  # only hit/miss leaves this function
    # A miss is ranked k_file (the file's guess count): with fewer guesses than k it must not read as a hit.
    hits = first_hit_rank(guesses, labels) < min(k, guesses.shape[1])
    n = np.array([len(hits)], dtype=np.uint64).view(np.uint8)
    with _HITS_LOCK:
        _HITS[key] = np.concatenate([n, np.packbits(hits)])
        while len(_HITS) > _HITS_KEPT:
            _HITS.popitem(last=False)
    return hits


def challenge_hits(session: Session, challenge: Challenge, submission_ids: Sequence[int], k: int | None = None,
                   images: np.ndarray | None = None) -> np.ndarray:
    """The hits matrix (len(submission_ids) x images, bool) of stored submissions to `challenge`.

    `k`: top-k (default: the challenge's metric). `images`: positions (or a boolean mask) in the challenge's
    sorted test ids to keep, e.g. a public part. A file is parsed once per process (about 0.1 s for 50,000
    rows) and kept packed (1 bit per image); later calls cost an unpack.
    """
    if challenge.task != "classification":
        raise ChallengeError(f"rank intervals are computed for classification challenges; "
                             f"{challenge.slug!r} is {challenge.task}")
    k = top_k_of(challenge.metric) if k is None else int(k)
    ids = [int(i) for i in submission_ids]
    rows = {row.id: row for row in session.scalars(
        # file_data stays deferred: it is loaded, row by row, only for files not parsed yet.
        select(Submission).where(Submission.id.in_(ids), Submission.challenge_id == challenge.id))} if ids else {}
    missing = [i for i in ids if i not in rows]
    if missing:
        raise ChallengeError(f"no submission {missing[0]} to challenge {challenge.slug!r}")
    matrix = np.stack([_entry_hits(session, challenge, rows[i], k) for i in ids]) if ids else np.zeros((0, 0), bool)
    return matrix if images is None or not ids else matrix[:, np.asarray(images)]


def forget_hits() -> None:
    """Drop the cached hits (after a label fix, with scoring.forget_held_labels)."""
    with _HITS_LOCK:
        _HITS.clear()


@dataclass(frozen=True)
class RankedEntry:
    submission_id: int
    error: float
    rank: int
    low: int
    high: int
    tied_with_next: bool  # not significantly different from the entry listed after it


def board_intervals(session: Session, challenge: Challenge, submission_ids: Sequence[int], k: int | None = None,
                    images: np.ndarray | None = None, replicates: int = REPLICATES, seed: int = SEED,
                    level: float = LEVEL) -> list[RankedEntry]:
    """The board's rank intervals: the given submissions (e.g. each team's best), best first."""
    if not submission_ids:
        return []
    ids = list(submission_ids)
    ranking = rank_intervals(challenge_hits(session, challenge, ids, k, images), replicates, seed, level)
    return [RankedEntry(ids[i], float(ranking.error[i]), int(ranking.rank[i]), int(ranking.low[i]),
                        int(ranking.high[i]), bool(ranking.tied_with_next[p]))
            for p, i in enumerate(ranking.order)]


def compare_submissions(session: Session, challenge: Challenge, a: int, b: int, k: int | None = None,
                        images: np.ndarray | None = None, replicates: int = REPLICATES, seed: int = SEED,
                        level: float = LEVEL) -> Comparison:
    """The compare view: is submission `a` better than submission `b` on `challenge`?"""
    hits = challenge_hits(session, challenge, [a, b], k, images)
    return compare(hits[0], hits[1], replicates, seed, level)
