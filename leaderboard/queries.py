"""What the site and the CLI show, as pandas frames. Nothing here reads held labels.

One function per page view, each one SQL query where it can be, so a benchmark can time them.
Times come back as UTC pandas timestamps (SQLite hands back naive datetimes, all UTC).
"""
from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import Float, and_, cast, func, select, union_all

from db.engine import session_scope
from db.schema import Challenge, Run, Submission, Team
from leaderboard import phases, scoring
from workers.metric_registry import (
    METRICS,
    PRIMARY,
    Metric,
    board_metrics,
    column_metrics,
    listed_metrics,
)

# The metric columns follow from workers.metric_registry: `runs` columns as the table has them (fixed at
# import, as the schema is); a board's columns and a team's history are read from the registry per call.
RUN_METRICS = tuple(listed_metrics(column=True))  # what the run lists show: top-1/top-5 err, mAP@0.5
RUN_COLUMNS = {
    "arch": "architecture", "family": "family", "dataset": "dataset", "suite": "suite", "seed": "seed",
    "state": "state", **{name: METRICS[name].display for name in RUN_METRICS}, "params": "params",
    "flops": "FLOPs", "input_size": "input", "train_ips": "train img/s", "wall_s": "wall s", "hardware": "hardware",
    "finished_at": "finished", "job_id": "job",
}
STATES = ("queued", "running", "done", "failed")
ARCH_COLUMNS = ("job_id", "task", "arch", "family", "dataset", "suite", "seed", *column_metrics(), "params", "flops",
                "input_size", "train_ips", "eval_ips", "wall_s", "peak_mem_mb", "hardware", "finished_at")
CAMPAIGN_COLUMNS = ("job_id", "suite", "task", "arch", "dataset", "seed", "state", "attempts", "epochs_done", "error",
                    "node", "created_at", "started_at", "finished_at", "wall_s")
DETECTION_COLUMNS = ("job_id", "arch", "dataset", "suite", "seed", *column_metrics("detection"), "params", "flops",
                     "metrics", "finished_at")
RECORD_COLUMNS = ("job_id", "suite", "task", "arch", "family", "dataset", "seed", "state", "error", "attempts",
                  "epochs_done", *column_metrics(), "metrics", "history", "params", "flops",
                  "input_size", "train_ips", "eval_ips", "wall_s", "peak_mem_mb", "config", "git_commit", "versions",
                  "hardware", "node", "launcher", "checkpoint", "log_path", "log_text", "created_at", "started_at",
                  "finished_at")  # log_path is shown only; log_text is the log
SUBMISSION_COLUMNS = ("submission_id", "team", "official", "label", "description", "code_url", "run_id", "arch",
                      "family", "params", "flops", "input_size", "primary_score", "scores", "created_at")
TIME_COLUMNS = ("created_at", "started_at", "finished_at")
BOARD_PAGE = 200  # rows per page: a board's entries, and the run lists of the other pages


def metric_text(metric: Metric, value: float, digits: int = 2) -> str:
    """A metric's value as text in its unit: "12.3%" for a fraction shown in percent, else the number."""
    return f"{100 * value:.{digits}f}%" if metric.percent else f"{value:.{digits + 2}f}"


def _times(frame: pd.DataFrame) -> pd.DataFrame:
    for column in TIME_COLUMNS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _rows_frame(rows: Any, columns: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """A frame of result rows, as plain tuples: pandas probes each SQLAlchemy Row for namedtuple fields, whose
    failed attribute lookups cost more than the query (60 of 90 ms for the 10,000 runs of the run picker)."""
    return _times(pd.DataFrame([tuple(row) for row in rows], columns=list(columns)))


def _frame(url: str | None, query: Any, columns: tuple[str, ...] | list[str]) -> pd.DataFrame:
    with session_scope(url) as s:
        rows = s.connection().execute(query).all()  # Core, not the ORM: no per-row ORM loading
    return _rows_frame(rows, columns)


def _paged(url: str | None, query: Any, where: list[Any], order: tuple[Any, ...], columns: tuple[str, ...],
           limit: int | None, offset: int) -> pd.DataFrame:
    """`limit` rows from row `offset` (None: all of them) of `query` filtered by `where` in `order`, and in
    `frame.attrs["total"]` how many rows match `where` in all: the database sorts, pages and counts."""
    with session_scope(url) as s:
        connection = s.connection()  # Core, not the ORM: no per-row ORM loading
        total = int(connection.scalar(select(func.count()).select_from(Run).where(*where)) or 0)
        rows = connection.execute(query.where(*where).order_by(*order).limit(limit).offset(offset)).all() \
            if total > offset else []
    frame = _rows_frame(rows, columns)
    frame.attrs["total"] = total
    return frame


def _within(column: Any, values: list[str] | None) -> list[Any]:
    """A page's filter as a WHERE term: None is no filter, an empty list matches nothing."""
    return [] if values is None else [column.in_(list(values))]


def _best_first(name: str) -> Any:
    column = getattr(Run, name)
    return (column.asc() if METRICS[name].lower_is_better else column.desc()).nulls_last()


# Best first: each task's board order of the listed metrics (classification: top-5 error, then top-1; then
# detection: mAP@0.5), then the job id, so pages never overlap.
RANKING = (*(_best_first(m.name) for task in PRIMARY for m in board_metrics(task) if m.name in RUN_METRICS),
           Run.job_id)


def runs_frame(url: str | None = None, suite: str | None = None, state: str | None = "done",
               limit: int | None = BOARD_PAGE, offset: int = 0) -> pd.DataFrame:
    """A page of benchmark runs, best first: by top-5 error (classification), then mAP (detection).

    `limit` rows from row `offset` (None: every run); `frame.attrs["total"]`: how many runs match in all.
    """
    where = ([Run.suite == suite] if suite else []) + ([Run.state == state] if state else [])
    query = select(*[getattr(Run, c) for c in RUN_COLUMNS])
    return _paged(url, query, where, RANKING, tuple(RUN_COLUMNS), limit, offset)


def format_runs(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(no finished runs)"
    view = frame[["arch", "dataset", "seed", *RUN_METRICS, "params", "flops", "train_ips", "wall_s"]].copy()
    view["params"] = (view["params"] / 1e6).map("{:.2f}M".format)
    view["flops"] = (view["flops"] / 1e9).map("{:.3f}G".format)
    for col in RUN_METRICS:
        view[col] = view[col].map(lambda v, m=METRICS[col]: "-" if pd.isna(v) else metric_text(m, v, 1))
    view["train_ips"] = view["train_ips"].map(lambda v: "-" if pd.isna(v) else f"{v:.0f}")
    view["wall_s"] = view["wall_s"].map(lambda v: "-" if pd.isna(v) else f"{v:.1f}")
    view.index = range(1, len(view) + 1)
    return view.rename(columns=RUN_COLUMNS).to_string()


# --- challenges and their leaderboards -------------------------------------------------------

def challenges_frame(url: str | None = None) -> pd.DataFrame:
    """Every challenge (oldest first) with its task, metric and submission rule."""
    columns = ("slug", "title", "task", "dataset", "metric", "quota", "window_days", "created_at", "open_book",
               "closed_at", "ladder_threshold")  # open_book: labels rebuildable from public code, said so on the board
    query = select(*[getattr(Challenge, c) for c in columns]).order_by(Challenge.id)
    return _frame(url, query, columns)


def _official_teams() -> Any:
    return select(Team.id).where(Team.official)


def ladder_scores(metric: str, shown_score: float) -> dict[str, Any]:
    """What is told of a submission's scores under the Ladder: the metric's shown value alone. No interval and no
    other metric: either would tell the exact public score the Ladder withholds."""
    return {"metric": metric, metric: scoring.metric_value(metric, shown_score), "ladder": True}


def score_column(ladder: bool) -> Any:
    """The score a board ranks and shows: the Ladder's shown score (leaderboard.ladder), else the exact one."""
    return Submission.shown_score if ladder else Submission.primary_score


def _entries(challenge: int, shown: list[Any], score: Any = Submission.primary_score) -> Any:
    """The board's entries (id, score, created_at): each team's best submission, and for an official
    team every submission (each baseline run is an entry of its own; a run is submitted once per challenge).
    `shown`: WHERE terms leaving out the submissions whose scores a hidden phase withholds (phases.shown_clause).
    `score`: the column ranked (score_column): under the Ladder a team's best is the upload that set its shown
    score, the earliest at that score, so the entry shown tells nothing the shown score does not.

    A team's best is the lowest primary score, then the earliest, then the lowest id: MIN per team on the
    index (challenge, team, score), then the tie-break over the rows at that score only. The LEFT JOIN keeps
    SQLite's planner from scanning every submission of the challenge to look the 1,000 minima up.
    """
    best = (select(Submission.team_id, func.min(score).label("score"))
            .where(Submission.challenge_id == challenge, Submission.team_id.not_in(_official_teams()), *shown)
            .group_by(Submission.team_id).subquery())
    tied = (select(Submission.id, score.label("primary_score"), Submission.created_at,
                   func.row_number().over(partition_by=Submission.team_id,
                                          order_by=(Submission.created_at, Submission.id)).label("tie"))
            .select_from(best)
            .outerjoin(Submission, and_(Submission.challenge_id == challenge, Submission.team_id == best.c.team_id,
                                        score == best.c.score, *shown))).subquery()
    regular = select(tied.c.id, tied.c.primary_score, tied.c.created_at).where(tied.c.tie == 1)
    official = (select(Submission.id, score.label("primary_score"), Submission.created_at)
                .where(Submission.challenge_id == challenge, Submission.team_id.in_(_official_teams()), *shown))
    return union_all(regular, official).subquery()


def _page(s: Any, challenge: int, best_only: bool, limit: int | None, offset: int,
          score: Any = Submission.primary_score) -> tuple[dict[int, int], int]:
    """Submission id -> rank (1 + how many rows score better: ties share a rank) of one page of the board,
    and how many rows the whole board has. `challenge` is an id, not a subquery: PostgreSQL plans for the value.
    Submissions of a hidden phase are left out while it withholds their scores (leaderboard.phases.withheld).
    `score`: the column ranked (score_column)."""
    shown = phases.shown_clause(phases.withheld(s, challenge))
    if best_only:
        entries = _entries(challenge, shown, score)
        rows = s.execute(select(entries.c.id, entries.c.primary_score)
                         .order_by(entries.c.primary_score, entries.c.created_at, entries.c.id)).all()
        ranks = pd.Series([score for _, score in rows], dtype=float).rank(method="min").astype(int).tolist()
        end = None if limit is None else offset + limit
        return {int(i): r for (i, _), r in zip(rows[offset:end], ranks[offset:end])}, len(rows)
    total = int(s.scalar(select(func.count()).where(Submission.challenge_id == challenge, *shown)) or 0)
    rows = s.execute(select(Submission.id, score).where(Submission.challenge_id == challenge, *shown)
                     .order_by(score, Submission.created_at, Submission.id)
                     .limit(limit).offset(offset)).all()
    if not rows:
        return {}, total
    # Rows before the page score at most the page's lowest score, so the ranks need one count: of the rows
    # below that lowest score (for the rows tied with it); the others rank after everything before the page.
    lowest = rows[0][1]
    below = int(s.scalar(select(func.count()).where(Submission.challenge_id == challenge, *shown,
                                                   score < lowest)) or 0)
    within = pd.Series([score for _, score in rows], dtype=float).rank(method="min").astype(int) - 1
    ranks = [below + 1 if score == lowest else offset + w + 1 for (_, score), w in zip(rows, within.tolist())]
    return {int(i): r for (i, _), r in zip(rows, ranks)}, total


def submissions_frame(url: str | None, slug: str, best_only: bool = True, limit: int | None = BOARD_PAGE,
                      offset: int = 0) -> pd.DataFrame:
    """One page of a challenge's board, best first: submissions joined with their team and (baselines) run.

    `best_only`: each team's best entry (baselines: one per run), as the public board shows it; else every
    submission. `rank` is the row's place on the whole board, not on the page. `limit=None`: every row.
    `frame.attrs["total"]`: how many rows the whole board has.

    Under the Ladder (`frame.attrs["ladder"]`: its threshold, else None) `primary_score` is the Ladder's shown score
    and `scores` its value alone (ladder_scores): the exact public score never leaves this function.
    """
    with session_scope(url) as s:
        connection = s.connection()  # Core, not the ORM: no per-row ORM loading
        found = connection.execute(select(Challenge.id, Challenge.metric, Challenge.ladder_threshold)
                                   .where(Challenge.slug == slug)).first()
        challenge, metric, threshold = found if found is not None else (None, "", None)
        score = score_column(threshold is not None)
        columns = (Submission.id, Team.name, Team.official, Submission.label, Submission.description,
                   Submission.code_url, Submission.run_id, Run.arch, Run.family, Run.params, Run.flops,
                   Run.input_size, score, Submission.scores, Submission.created_at)
        ranks, total = (_page(connection, challenge, best_only, limit, offset, score) if challenge is not None
                        else ({}, 0))
        rows = connection.execute(select(*columns).join(Team, Team.id == Submission.team_id)
                         .outerjoin(Run, Run.job_id == Submission.run_id)
                         .where(Submission.id.in_(list(ranks)))).all() if ranks else []
    frame = pd.DataFrame(rows, columns=list(SUBMISSION_COLUMNS))
    if threshold is not None:
        frame["scores"] = [ladder_scores(metric, shown) for shown in frame["primary_score"]]
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["rank"] = frame["submission_id"].map(ranks).astype("Int64")
    frame = frame.sort_values(["primary_score", "created_at", "submission_id"]).reset_index(drop=True)
    frame.attrs["total"] = total
    frame.attrs["ladder"] = threshold
    return frame


def board_rank(url: str | None, slug: str, submission_id: int, primary_score: float) -> tuple[int, bool, int]:
    """(rank, on the board, board size) of a submission on the public board (each team's best): its rank where
    the board shows it, else the rank its score would take there (1 + the entries that score better)."""
    board = submissions_frame(url, slug, best_only=True, limit=None)
    size = int(board.attrs.get("total", len(board)))
    mine = board.loc[board["submission_id"] == submission_id, "rank"]
    if len(mine):
        return int(mine.iloc[0]), True, size
    return 1 + int((board["primary_score"] < primary_score).sum()), False, size


def _ci(scores: Any, key: str) -> tuple[float, float]:
    ci = scores.get(f"{key}_ci") if isinstance(scores, dict) else None
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        return float(ci[0]), float(ci[1])
    return float("nan"), float("nan")


def _score(scores: Any, key: str) -> float:
    value = scores.get(key) if isinstance(scores, dict) else None
    return float(value) if isinstance(value, (int, float)) else float("nan")


def board_columns(task: str) -> tuple[str, ...]:
    """The score columns of a board: the primary metric first, the task's other board metrics beside it."""
    return tuple(m.name for m in board_metrics(task))


def significance(frame: pd.DataFrame, metric: str) -> pd.Series:
    """Each entry against the leader: overlapping 95% CIs are "not significantly different".

    Overlap of two intervals is a conservative test (it misses some real differences), which is
    the right side to err on before calling one entry better than another.
    """
    lo, hi = frame[f"{metric}_lo"], frame[f"{metric}_hi"]
    if frame.empty:
        return pd.Series([], dtype=object, index=frame.index)
    top_lo, top_hi = lo.iloc[0], hi.iloc[0]
    known = lo.notna() & hi.notna() & pd.notna(top_lo) & pd.notna(top_hi)
    overlap = known & (lo <= top_hi) & (top_lo <= hi)
    verdict = pd.Series("", index=frame.index, dtype=object)
    verdict[known & ~overlap] = "significantly behind"
    verdict[overlap] = "not significantly different"
    verdict[frame["rank"] == 1] = "leader"
    return verdict


def leaderboard(url: str | None, slug: str, best_only: bool = True, task: str | None = None,
                limit: int | None = BOARD_PAGE, offset: int = 0) -> pd.DataFrame:
    """A page of a challenge's ranked board: rank, entry, team, metric values with 95% CIs, cost, date, verdict.

    `entry` is the entry's name as the team gave it (`label`), else a baseline's architecture, else the team's
    name; `description` and `code_url` are the team's own words and link (None where it gave none).

    `limit` rows from row `offset` (None: all of them); ranks and verdicts are against the whole board,
    whose size is in `board.attrs["total"]`.

    Metric columns hold the metric's own value (errors as fractions, mAP as a fraction), with
    `<metric>_lo` / `<metric>_hi` bounds where the scorer gave an interval. Pass the challenge's
    `task` when it is at hand (the page has it) to save a query.
    """
    if task is None:
        with session_scope(url) as s:
            task = s.scalar(select(Challenge.task).where(Challenge.slug == slug)) or "classification"
    raw = submissions_frame(url, slug, best_only, limit, offset)
    ladder = raw.attrs.get("ladder")
    if offset > 0 and len(raw):  # the verdicts compare with the leader, who is on the first page
        raw = pd.concat([submissions_frame(url, slug, best_only, 1, 0), raw], ignore_index=True)
    official = raw["official"].astype(bool)
    labelled = raw["label"].fillna("") != ""
    by_arch = official & raw["arch"].notna() & (raw["arch"].fillna("") != "")
    board = pd.DataFrame({
        "rank": raw["rank"],
        # The name the team gave the entry: without it, two entries of one team would be two identical rows.
        "entry": raw["label"].where(labelled, raw["arch"].where(by_arch, raw["team"])),
        "team": raw["team"], "baseline": official, "label": raw["label"],
        "description": raw["description"], "code_url": raw["code_url"],
    })
    for key in board_columns(task):
        board[key] = [_score(scores, key) for scores in raw["scores"]]
        bounds = [_ci(scores, key) for scores in raw["scores"]]
        board[f"{key}_lo"] = [low for low, _ in bounds]
        board[f"{key}_hi"] = [high for _, high in bounds]
    metric = board_columns(task)[0]
    # A score the scorer left out of `scores` still has its primary value.
    fallback = raw["primary_score"].map(lambda p: scoring.metric_value(metric, p))
    board[metric] = board[metric].fillna(fallback)
    board["params"], board["flops"], board["input_size"] = raw["params"], raw["flops"], raw["input_size"]
    board["arch"], board["run_id"] = raw["arch"], raw["run_id"]
    board["submitted"], board["submission_id"] = raw["created_at"], raw["submission_id"]
    board["vs_leader"] = significance(board, metric)
    if offset > 0 and len(board):
        board = board.iloc[1:]
    board = board.reset_index(drop=True)
    board.attrs["total"] = raw.attrs.get("total", len(board))
    board.attrs["ladder"] = ladder  # the Ladder's threshold: scores are its shown ones, with no interval
    return board


def team_submissions(url: str | None, team: str) -> pd.DataFrame:
    """A team's own submissions on every challenge, newest first: scores only, never a file or a label."""
    columns = ("submission_id", "challenge", "metric", "label", "description", "code_url", "primary_score", "scores",
               "n_rows", "created_at")
    query = (select(Submission.id, Challenge.slug, Challenge.metric, Submission.label, Submission.description,
                    Submission.code_url, Submission.primary_score, Submission.scores, Submission.n_rows,
                    Submission.created_at, Submission.shown_score)
             .join(Team, Team.id == Submission.team_id).join(Challenge, Challenge.id == Submission.challenge_id)
             .where(Team.name == team).order_by(Submission.created_at.desc(), Submission.id.desc()))
    raw = _laddered(_frame(url, query, (*columns, "shown_score")))
    history = raw[["created_at", "challenge", "label", "description", "code_url", "metric", "n_rows",
                   "submission_id"]].copy()
    history["score"] = [scoring.metric_value(m, p) for m, p in zip(raw["metric"], raw["primary_score"])]
    for key in listed_metrics():
        history[key] = [_score(scores, key) for scores in raw["scores"]]
    return _withhold(url, history, ["score", *listed_metrics()])


def _laddered(raw: pd.DataFrame) -> pd.DataFrame:
    """Rows of submissions (columns metric, primary_score, shown_score, perhaps scores) with, where the Ladder showed
    a score (shown_score set), that score in place of the exact one and nothing else of it (ladder_scores)."""
    laddered = raw["shown_score"].notna()
    if laddered.any():
        raw.loc[laddered, "primary_score"] = raw.loc[laddered, "shown_score"]
        if "scores" in raw:
            raw.loc[laddered, "scores"] = pd.Series([ladder_scores(m, v) for m, v in zip(
                raw.loc[laddered, "metric"], raw.loc[laddered, "shown_score"])], index=raw.index[laddered], dtype=object)
    return raw


def _withhold(url: str | None, frame: pd.DataFrame, scores: list[str]) -> pd.DataFrame:
    """`frame` (columns challenge, created_at) with the `scores` of each row a hidden phase withholds blanked, and
    a `status` column saying until when (leaderboard.phases.withheld); "" where the scores are shown."""
    frame["status"] = ""
    if frame.empty:
        return frame
    with session_scope(url) as s:
        connection = s.connection()
        ids = connection.execute(select(Challenge.slug, Challenge.id)
                                 .where(Challenge.slug.in_(set(frame["challenge"])))).all()
        spans = {slug: phases.withheld(connection, cid) for slug, cid in ids}
    for index, slug, made in zip(frame.index, frame["challenge"], frame["created_at"]):
        hidden = phases.withholding(spans.get(slug, []), pd.Timestamp(made).to_pydatetime())
        if hidden is not None:
            frame.loc[index, scores] = float("nan")
            frame.loc[index, "status"] = hidden.note()
    return frame


# --- benchmark runs ----------------------------------------------------------------------------

def architecture_facets(url: str | None = None) -> pd.DataFrame:
    """What the Architectures page filters on: finished runs per dataset, family and suite (GROUP BY)."""
    columns = ("dataset", "family", "suite", "runs")
    query = (select(Run.dataset, Run.family, Run.suite, func.count()).where(Run.state == "done")
             .group_by(Run.dataset, Run.family, Run.suite).order_by(Run.dataset, Run.family, Run.suite))
    return _frame(url, query, columns)


def _finished(datasets: list[str] | None, families: list[str] | None, suites: list[str] | None) -> list[Any]:
    return [Run.state == "done", *_within(Run.dataset, datasets), *_within(Run.family, families),
            *_within(Run.suite, suites)]


def architectures_frame(url: str | None = None, datasets: list[str] | None = None,
                        families: list[str] | None = None, suites: list[str] | None = None,
                        limit: int | None = BOARD_PAGE, offset: int = 0) -> pd.DataFrame:
    """A page of the finished runs with their scores and costs, best top-5 error first (then mAP).

    Each filter is a list of the values to keep (None: no filter); `limit` rows from row `offset` (None:
    all of them); `frame.attrs["total"]`: how many runs the filters keep.
    """
    query = select(*[getattr(Run, c) for c in ARCH_COLUMNS])
    return _paged(url, query, _finished(datasets, families, suites), RANKING, ARCH_COLUMNS, limit, offset)


def architecture_points(url: str | None = None, datasets: list[str] | None = None,
                        families: list[str] | None = None, suites: list[str] | None = None) -> pd.DataFrame:
    """One bubble per architecture and dataset over the finished classification runs the filters keep
    that have a top-1 error and a measured cost: mean top-1 accuracy, top-1 and top-5 error, parameters (M),
    GFLOPs and training time (s), and how many runs; best accuracy first. Averaged by the database (GROUP
    BY), not over every run in pandas."""
    columns = ("arch", "family", "dataset", "top1_acc", "params_m", "gflops", "runs", "top1_err", "top5_err",
               "wall_s")
    top1_acc = func.avg(1.0 - Run.top1_err).label("top1_acc")
    query = (select(Run.arch, Run.family, Run.dataset, top1_acc,
                    func.avg(cast(Run.params, Float)) / 1e6, func.avg(Run.flops) / 1e9, func.count(),
                    func.avg(Run.top1_err), func.avg(Run.top5_err), func.avg(Run.wall_s))
             .where(*_finished(datasets, families, suites), Run.top1_err.is_not(None), Run.params.is_not(None),
                    Run.flops.is_not(None))
             .group_by(Run.arch, Run.family, Run.dataset)
             .order_by(top1_acc.desc(), Run.arch, Run.dataset))
    frame = _frame(url, query, columns)
    return frame.astype({"top1_acc": float, "params_m": float, "gflops": float, "runs": int, "top1_err": float,
                         "top5_err": float, "wall_s": float})


def time_to_runs(url: str | None = None, datasets: list[str] | None = None, families: list[str] | None = None,
                 suites: list[str] | None = None) -> pd.DataFrame:
    """The finished classification runs the filters keep that recorded their time to accuracy: job_id, arch,
    dataset, seed and `time_to` (workers.metrics.time_to's list). Only that JSON path is read, not the whole
    metrics, which hold the run's confusion matrix."""
    time_to = Run.metrics["time_to"]
    query = (select(Run.job_id, Run.arch, Run.dataset, Run.seed, time_to)
             .where(*_finished(datasets, families, suites), Run.top1_err.is_not(None))
             .order_by(Run.arch, Run.dataset, Run.job_id))
    frame = _frame(url, query, ("job_id", "arch", "dataset", "seed", "time_to"))
    recorded = frame["time_to"].map(lambda t: isinstance(t, list) and bool(t)).astype(bool)
    return frame[recorded].reset_index(drop=True)


def histories_frame(url: str | None, job_ids: list[str]) -> pd.DataFrame:
    """Learning curves of the given runs, one row per run and epoch (columns: what the runs logged)."""
    if not job_ids:
        return pd.DataFrame(columns=["job_id", "arch", "dataset", "seed", "epoch"])
    query = select(Run.job_id, Run.arch, Run.dataset, Run.seed, Run.history).where(Run.job_id.in_(job_ids))
    rows = []
    with session_scope(url) as s:
        for job_id, arch, dataset, seed, history in s.execute(query):
            for record in history or []:
                if isinstance(record, dict):
                    rows.append({"job_id": job_id, "arch": arch, "dataset": dataset, "seed": seed, **record})
    return pd.DataFrame(rows, columns=None if rows else ["job_id", "arch", "dataset", "seed", "epoch"])


def detection_frame(url: str | None = None) -> pd.DataFrame:
    """Finished detection runs, best mAP@0.5 first, with their metrics dicts (per-class AP, proposals)."""
    query = (select(*[getattr(Run, c) for c in DETECTION_COLUMNS])
             .where(Run.task == "detection", Run.state == "done"))
    frame = _frame(url, query, DETECTION_COLUMNS)
    return frame.sort_values(["map50", "job_id"], ascending=[False, True], na_position="last").reset_index(drop=True)


def campaign_counts(url: str | None = None) -> pd.DataFrame:
    """Jobs per suite and state (GROUP BY): the Campaign page's totals, per-suite table and filter options."""
    query = select(Run.suite, Run.state, func.count()).group_by(Run.suite, Run.state).order_by(Run.suite, Run.state)
    return _frame(url, query, ("suite", "state", "jobs"))


def campaign_frame(url: str | None = None, suites: list[str] | None = None, states: list[str] | None = None,
                   limit: int | None = BOARD_PAGE, offset: int = 0) -> pd.DataFrame:
    """A page of the jobs in the given suites and states (None: all), newest first, failures' errors included.

    `limit` rows from row `offset` (None: all of them); `frame.attrs["total"]`: how many jobs match in all.
    """
    query = select(*[getattr(Run, c) for c in CAMPAIGN_COLUMNS])
    where = _within(Run.suite, suites) + _within(Run.state, states)
    return _paged(url, query, where, (Run.created_at.desc(), Run.job_id), CAMPAIGN_COLUMNS, limit, offset)


def campaign_times(url: str | None = None, suites: list[str] | None = None) -> pd.DataFrame:
    """Every job's state and its queued, started and finished times (four narrow columns): the Campaign
    page's jobs-over-time and throughput charts."""
    columns = ("state", "created_at", "started_at", "finished_at")
    query = select(*[getattr(Run, c) for c in columns]).where(*_within(Run.suite, suites))
    return _frame(url, query, columns)


def run_choices(url: str | None = None) -> pd.DataFrame:
    """Every run for a picker: newest first."""
    columns = ("job_id", "arch", "dataset", "suite", "seed", "state")
    query = select(*[getattr(Run, c) for c in columns]).order_by(Run.created_at.desc(), Run.job_id)
    return _frame(url, query, columns)


def run_record(url: str | None, job_id: str) -> dict[str, Any] | None:
    """One run's every column (its provenance included); None if there is no such run."""
    query = select(*[getattr(Run, c) for c in RECORD_COLUMNS]).where(Run.job_id == job_id)
    with session_scope(url) as s:
        row = s.execute(query).first()
    return dict(zip(RECORD_COLUMNS, row)) if row is not None else None


def run_submissions(url: str | None, job_id: str) -> pd.DataFrame:
    """The challenge entries a run was submitted as: the way back from a board row to the run."""
    columns = ("challenge", "metric", "primary_score", "created_at", "submission_id")
    query = (select(Challenge.slug, Challenge.metric, Submission.primary_score, Submission.created_at, Submission.id,
                    Submission.shown_score)
             .join(Challenge, Challenge.id == Submission.challenge_id).where(Submission.run_id == job_id)
             .order_by(Submission.created_at))
    raw = _laddered(_frame(url, query, (*columns, "shown_score")))
    raw["score"] = [scoring.metric_value(m, p) for m, p in zip(raw["metric"], raw["primary_score"])]
    return _withhold(url, raw[["challenge", "metric", "score", "created_at", "submission_id"]].copy(), ["score"])
