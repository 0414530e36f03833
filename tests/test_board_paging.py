"""The board a page at a time: each page's rows, ranks and verdicts are those of the whole board."""
from __future__ import annotations

import pandas as pd
from sqlalchemy import select, update

from bench.site_fixture import CHALLENGES, populate
from db.engine import session_scope
from db.schema import Submission, Team
from leaderboard.queries import leaderboard, submissions_frame


def every_submission(url: str, slug: str) -> pd.DataFrame:
    return submissions_frame(url, slug, best_only=False, limit=None)


def reference_entries(url: str, slug: str) -> list[int]:
    """Each team's best (lowest score, then earliest, then lowest id); every official submission."""
    rows = every_submission(url, slug)
    with session_scope(url) as s:
        official = set(s.scalars(select(Team.name).where(Team.official)))
    best = rows[~rows["team"].isin(official)].sort_values(["primary_score", "created_at", "submission_id"])
    best = best.drop_duplicates("team")
    entries = pd.concat([best, rows[rows["team"].isin(official)]])
    return entries.sort_values(["primary_score", "created_at", "submission_id"])["submission_id"].tolist()


def test_pages_add_up_to_the_whole_board(db_url: str) -> None:
    fixture = populate(db_url, 120, 900)
    slug, task = CHALLENGES[1][0], CHALLENGES[1][1]  # teams' uploads only: many teams with several
    with session_scope(db_url) as s:  # ties: the same best score twice in a team, and across teams
        first, second, third = s.execute(select(Submission.id, Submission.team_id).join(Team)
                                         .where(Submission.challenge_id == 2, ~Team.official)
                                         .order_by(Submission.id).limit(3)).all()
        s.execute(update(Submission).where(Submission.id.in_([first.id, second.id, third.id]))
                  .values(primary_score=0.0001))
    for best_only in (True, False):
        whole = leaderboard(db_url, slug, best_only, task=task, limit=None)
        assert whole.attrs["total"] == len(whole)
        if best_only:
            assert whole["submission_id"].tolist() == reference_entries(db_url, slug)
        scores = submissions_frame(db_url, slug, best_only, limit=None)["primary_score"]
        assert whole["rank"].tolist() == scores.rank(method="min").astype(int).tolist()
        for size, stop in ((37, len(whole)), (2, 12)):  # pages of 2: the three tied leaders straddle pages 1 and 2
            pages = [leaderboard(db_url, slug, best_only, task=task, limit=size, offset=o) for o in range(0, stop, size)]
            assert all(page.attrs["total"] == len(whole) for page in pages)
            paged = pd.concat(pages, ignore_index=True)
            for column in ("submission_id", "rank", "entry", "vs_leader"):
                assert paged[column].tolist() == whole[column].tolist()[:stop], column
    assert fixture.main_slug == CHALLENGES[0][0]
    assert leaderboard(db_url, slug, True, task=task, offset=10_000).empty
