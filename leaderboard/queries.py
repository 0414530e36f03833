"""What the site and the CLI show, as pandas frames. Nothing here reads held labels.

One function per page view, each one SQL query where it can be, so a benchmark can time them.
Times come back as UTC pandas timestamps (SQLite hands back naive datetimes, all UTC).
"""
from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import String, case, cast, func, select

from db.engine import session_scope
from db.schema import Challenge, Run, Submission, Team
from leaderboard import scoring

RUN_COLUMNS = {
    "arch": "architecture", "family": "family", "dataset": "dataset", "suite": "suite", "seed": "seed",
    "state": "state", "top1_err": "top-1 err", "top5_err": "top-5 err", "map50": "mAP@0.5", "params": "params",
    "flops": "FLOPs", "input_size": "input", "train_ips": "train img/s", "wall_s": "wall s", "hardware": "hardware",
    "finished_at": "finished", "job_id": "job",
}
STATES = ("queued", "running", "done", "failed")
ARCH_COLUMNS = ("job_id", "task", "arch", "family", "dataset", "suite", "seed", "top1_err", "top5_err", "map50",
                "map_coco", "params", "flops", "input_size", "train_ips", "eval_ips", "wall_s", "peak_mem_mb",
                "hardware", "finished_at")
CAMPAIGN_COLUMNS = ("job_id", "suite", "task", "arch", "dataset", "seed", "state", "attempts", "epochs_done", "error",
                    "node", "created_at", "started_at", "finished_at", "wall_s")
DETECTION_COLUMNS = ("job_id", "arch", "dataset", "suite", "seed", "map50", "map_coco", "params", "flops", "metrics",
                     "finished_at")
RECORD_COLUMNS = ("job_id", "suite", "task", "arch", "family", "dataset", "seed", "state", "error", "attempts",
                  "epochs_done", "top1_err", "top5_err", "map50", "map_coco", "metrics", "history", "params", "flops",
                  "input_size", "train_ips", "eval_ips", "wall_s", "peak_mem_mb", "config", "git_commit", "versions",
                  "hardware", "node", "launcher", "checkpoint", "log_path", "created_at", "started_at",
                  "finished_at")
SUBMISSION_COLUMNS = ("submission_id", "team", "official", "label", "run_id", "arch", "family", "params", "flops",
                      "input_size", "primary_score", "scores", "created_at")
TIME_COLUMNS = ("created_at", "started_at", "finished_at")


def _frame(url: str | None, query: Any, columns: tuple[str, ...] | list[str]) -> pd.DataFrame:
    with session_scope(url) as s:
        frame = pd.DataFrame(s.execute(query).all(), columns=list(columns))
    for column in TIME_COLUMNS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def runs_frame(url: str | None = None, suite: str | None = None, state: str | None = "done") -> pd.DataFrame:
    """Benchmark runs, best first: by top-5 error (classification), then mAP (detection)."""
    query = select(*[getattr(Run, c) for c in RUN_COLUMNS])
    if suite:
        query = query.where(Run.suite == suite)
    if state:
        query = query.where(Run.state == state)
    with session_scope(url) as s:
        frame = pd.DataFrame(s.execute(query).all(), columns=list(RUN_COLUMNS))
    frame = frame.sort_values(["top5_err", "top1_err", "map50"], ascending=[True, True, False], na_position="last")
    return frame.reset_index(drop=True)


def format_runs(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(no finished runs)"
    view = frame[["arch", "dataset", "seed", "top1_err", "top5_err", "map50", "params", "flops", "train_ips", "wall_s"]].copy()
    view["params"] = (view["params"] / 1e6).map("{:.2f}M".format)
    view["flops"] = (view["flops"] / 1e9).map("{:.3f}G".format)
    for col in ("top1_err", "top5_err", "map50"):
        view[col] = view[col].map(lambda v: "-" if pd.isna(v) else f"{100 * v:.1f}%")
    view["train_ips"] = view["train_ips"].map(lambda v: "-" if pd.isna(v) else f"{v:.0f}")
    view["wall_s"] = view["wall_s"].map(lambda v: "-" if pd.isna(v) else f"{v:.1f}")
    view.index = range(1, len(view) + 1)
    return view.rename(columns=RUN_COLUMNS).to_string()


# --- challenges and their leaderboards -------------------------------------------------------

def challenges_frame(url: str | None = None) -> pd.DataFrame:
    """Every challenge (oldest first) with its task, metric and submission rule."""
    columns = ("slug", "title", "task", "dataset", "metric", "quota", "window_days", "created_at")
    query = select(*[getattr(Challenge, c) for c in columns]).order_by(Challenge.id)
    return _frame(url, query, columns)


def _entry_rank():
    """Row number of a submission within its board entry, best (lowest primary score, then earliest) first.

    An entry is a team's best submission; for the official team it is each run (or, without a run,
    each submission), since every baseline architecture is an entry of its own.
    """
    per_run = func.coalesce(Submission.run_id, "submission:" + cast(Submission.id, String))
    entry = case((Team.official, per_run), else_="")
    return func.row_number().over(partition_by=(Submission.team_id, entry),
                                  order_by=(Submission.primary_score, Submission.created_at, Submission.id))


def submissions_frame(url: str | None, slug: str, best_only: bool = True) -> pd.DataFrame:
    """A challenge's submissions joined with their team and (baselines) their run; one query.

    `best_only`: each team's best entry (baselines: one per run), as the public board shows it.
    """
    columns = (Submission.id, Team.name, Team.official, Submission.label, Submission.run_id, Run.arch, Run.family,
               Run.params, Run.flops, Run.input_size, Submission.primary_score, Submission.scores,
               Submission.created_at)
    inner = (select(*columns, _entry_rank().label("entry_rank"))
             .join(Team, Team.id == Submission.team_id)
             .join(Challenge, Challenge.id == Submission.challenge_id)
             .outerjoin(Run, Run.job_id == Submission.run_id)
             .where(Challenge.slug == slug)).subquery()
    query = select(*[inner.c[i] for i in range(len(columns))])
    if best_only:
        query = query.where(inner.c.entry_rank == 1)
    query = query.order_by(inner.c.primary_score, inner.c.created_at, inner.c.id)
    return _frame(url, query, SUBMISSION_COLUMNS)


def _ci(scores: Any, key: str) -> tuple[float, float]:
    ci = scores.get(f"{key}_ci") if isinstance(scores, dict) else None
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        return float(ci[0]), float(ci[1])
    return float("nan"), float("nan")


def _score(scores: Any, key: str) -> float:
    value = scores.get(key) if isinstance(scores, dict) else None
    return float(value) if isinstance(value, (int, float)) else float("nan")


def _entry_name(row: pd.Series) -> str:
    if row["official"]:
        return row["label"] or row["arch"] or row["team"]
    return row["team"]


def board_columns(task: str) -> tuple[str, ...]:
    """The score columns of a board: the primary metric first, the companion metric beside it."""
    return ("top5_err", "top1_err") if task == "classification" else ("map50", "map_coco")


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


def leaderboard(url: str | None, slug: str, best_only: bool = True, task: str | None = None) -> pd.DataFrame:
    """A challenge's ranked board: rank, entry, team, metric values with 95% CIs, cost, date, verdict.

    Metric columns hold the metric's own value (errors as fractions, mAP as a fraction), with
    `<metric>_lo` / `<metric>_hi` bounds where the scorer gave an interval. Pass the challenge's
    `task` when it is at hand (the page has it) to save a query.
    """
    if task is None:
        with session_scope(url) as s:
            task = s.scalar(select(Challenge.task).where(Challenge.slug == slug)) or "classification"
    raw = submissions_frame(url, slug, best_only)
    board = pd.DataFrame({
        "rank": raw["primary_score"].rank(method="min").astype("Int64"),
        "entry": raw.apply(_entry_name, axis=1) if len(raw) else pd.Series(dtype=object),
        "team": raw["team"], "baseline": raw["official"].astype(bool), "label": raw["label"],
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
    return board.reset_index(drop=True)


def team_submissions(url: str | None, team: str) -> pd.DataFrame:
    """A team's own submissions on every challenge, newest first: scores only, never a file or a label."""
    columns = ("submission_id", "challenge", "metric", "label", "primary_score", "scores", "n_rows", "created_at")
    query = (select(Submission.id, Challenge.slug, Challenge.metric, Submission.label, Submission.primary_score,
                    Submission.scores, Submission.n_rows, Submission.created_at)
             .join(Team, Team.id == Submission.team_id).join(Challenge, Challenge.id == Submission.challenge_id)
             .where(Team.name == team).order_by(Submission.created_at.desc(), Submission.id.desc()))
    raw = _frame(url, query, columns)
    history = raw[["created_at", "challenge", "label", "metric", "n_rows", "submission_id"]].copy()
    history["score"] = [scoring.metric_value(m, p) for m, p in zip(raw["metric"], raw["primary_score"])]
    for key in ("top1_err", "top5_err", "map50"):
        history[key] = [_score(scores, key) for scores in raw["scores"]]
    return history


# --- benchmark runs ----------------------------------------------------------------------------

def architectures_frame(url: str | None = None) -> pd.DataFrame:
    """Every finished run with its scores and costs, best top-5 error first (then mAP)."""
    query = select(*[getattr(Run, c) for c in ARCH_COLUMNS]).where(Run.state == "done")
    frame = _frame(url, query, ARCH_COLUMNS)
    frame = frame.sort_values(["top5_err", "top1_err", "map50", "job_id"], ascending=[True, True, False, True],
                              na_position="last")
    return frame.reset_index(drop=True)


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


def campaign_frame(url: str | None = None, suite: str | None = None) -> pd.DataFrame:
    """Every job in any state, newest first: the campaign's progress and its failures."""
    query = select(*[getattr(Run, c) for c in CAMPAIGN_COLUMNS])
    if suite:
        query = query.where(Run.suite == suite)
    query = query.order_by(Run.created_at.desc(), Run.job_id)
    return _frame(url, query, CAMPAIGN_COLUMNS)


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
    query = (select(Challenge.slug, Challenge.metric, Submission.primary_score, Submission.created_at, Submission.id)
             .join(Challenge, Challenge.id == Submission.challenge_id).where(Submission.run_id == job_id)
             .order_by(Submission.created_at))
    raw = _frame(url, query, columns)
    raw["score"] = [scoring.metric_value(m, p) for m, p in zip(raw["metric"], raw["primary_score"])]
    return raw[["challenge", "metric", "score", "created_at", "submission_id"]]
