"""Rank intervals and the audit trail (issue #15): what the host pays for them.

Rank intervals: a paired bootstrap of 1,000 replicates over 100 entries x 50,000 images
(leaderboard.ranking.rank_intervals), against the replicates' image counts alone (the draws every entry shares).
Target: <= 2 s. The compare view (two entries) beside it.

Audit verify: leaderboard.audit.verify_chain over 100,000 rows, on SQLite and (when reachable) PostgreSQL,
against streaming the same rows without hashing them (audit.stored_rows). Target: <= 2 s.
"""
from __future__ import annotations

import contextlib

import numpy as np

from bench.environment import workload
from bench.harness import Figure, Settings, Target, compared, interleave, timed

PACKAGES = ("numpy", "sqlalchemy")
TARGET = Target("<=", 2.0, on="value")
DRAWS, RANKS, COMPARE = "bootstrap draws alone", "rank intervals", "compare two entries"
SELECT, VERIFY = "SELECT the rows", "verify the chain"


def rank_figures(settings: Settings) -> list[Figure]:
    from leaderboard import ranking

    entries, images = settings.pick((100, 50_000), (20, 10_000))
    rng = np.random.default_rng(0)
    hits = rng.random((entries, images)) < rng.uniform(0.6, 0.8, size=(entries, 1))

    def draws() -> None:
        for _ in ranking.replicate_counts(images, ranking.REPLICATES, ranking.SEED):
            pass

    samples = interleave({DRAWS: lambda: timed(draws), RANKS: lambda: timed(lambda: ranking.rank_intervals(hits)),
                          COMPARE: lambda: timed(lambda: ranking.compare(hits[0], hits[1]))},
                         settings.repeats, settings.warmup)
    work = workload(PACKAGES, entries=entries, images=images, replicates=ranking.REPLICATES, threads=settings.threads)
    return [compared("ranking", f"rank intervals, {entries} entries x {images} images", work, "s", samples, RANKS,
                     DRAWS, TARGET, note="ratio: over the shared bootstrap draws alone"),
            compared("ranking", f"compare two entries on {images} images", work, "s", samples, COMPARE, DRAWS)]


def fill(url: str, rows: int) -> None:
    """`rows` chained events, inserted in batches as record() would have written them one by one."""
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from db.engine import create_schema, session_scope
    from leaderboard import audit

    create_schema(url)
    events = (audit.Event("submission.accepted", f"team {i % 50}", {"file_sha256": f"{i:064x}", "primary_score": 0.25,
                                                                    "n_rows": 50_000}, 1, f"submission {i}")
              for i in range(rows))
    chain = audit.chained(events, 1, audit.GENESIS, datetime(2030, 1, 1, tzinfo=UTC))
    with session_scope(url) as session:
        batch: list[dict] = []
        for row in chain:
            batch.append(row)
            if len(batch) == 10_000:
                session.execute(insert(audit.STORED), batch)
                batch = []
        if batch:
            session.execute(insert(audit.STORED), batch)


def audit_figures(settings: Settings) -> list[Figure]:
    from bench.site_fixture import postgres_database
    from db.engine import session_scope
    from leaderboard import audit

    rows = settings.pick(100_000, 20_000)
    found: list[Figure] = []
    with contextlib.ExitStack() as stack:
        urls = {"sqlite": f"sqlite:///{settings.workdir / 'audit.db'}"}
        (settings.workdir / "audit.db").unlink(missing_ok=True)
        try:
            urls["postgresql"] = stack.enter_context(postgres_database(settings.pg_url))
        except Exception as exc:  # noqa: BLE001 - any failure to reach the server means: SQLite only
            found.append(Figure("ranking", "audit verify on PostgreSQL", workload(PACKAGES, db="postgresql"), "s", [],
                                note=f"skipped: {exc.__class__.__name__}"))
        for dialect, url in urls.items():
            fill(url, rows)

            def plain(url: str = url) -> None:
                with session_scope(url) as session:
                    for _ in audit.stored_rows(session):
                        pass

            def verify(url: str = url) -> None:
                with session_scope(url) as session:
                    verdict = audit.verify_chain(session)
                if verdict.broken_id is not None or verdict.rows != rows:
                    raise RuntimeError(f"the bench's chain does not verify: {verdict}")

            samples = interleave({SELECT: lambda: timed(plain), VERIFY: lambda: timed(verify)},
                                 settings.repeats, settings.warmup)
            work = workload(PACKAGES, db=dialect, rows=rows, threads=settings.threads)
            found.append(compared("ranking", f"audit verify, {rows} rows ({dialect})", work, "s", samples, VERIFY,
                                  SELECT, TARGET, note="ratio: over streaming the same rows without hashing"))
    return found


def run(settings: Settings) -> list[Figure]:
    return rank_figures(settings) + audit_figures(settings)
