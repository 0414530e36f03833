"""`python -m orchestrator.board`: a suite's test-set boards as text (what `make demo` ends with).

Each challenge the suite's runs were scored on, ranked by the scorer: every score with its 95% CI where the
scorer gives one, the split and the number of test images it rests on, chance beside it; for R-CNN, the same
network's mAP with sliding-window boxes (the baseline selective search replaced). Then the command that opens
the site.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import pandas as pd
from sqlalchemy import select

from db.engine import session_scope
from db.schema import Challenge, Run, Submission
from leaderboard.queries import leaderboard, metric_text
from workers.metric_registry import METRICS


def suite_challenges(url: str, suite: str) -> list[tuple[str, str, int, str]]:
    """(slug, task, classes, split) of each challenge a run of `suite` was submitted to, by slug. The split is
    what the board's scores rest on: the test split, or its public part (leaderboard.parts)."""
    query = (select(Challenge.slug, Challenge.task, Challenge.class_names, Challenge.public_fraction).distinct()
             .join(Submission, Submission.challenge_id == Challenge.id).join(Run, Run.job_id == Submission.run_id)
             .where(Run.suite == suite).order_by(Challenge.slug))
    with session_scope(url) as s:
        return [(slug, task, len(names or []), "test" if fraction >= 1 else f"test, public {fraction:.0%}")
                for slug, task, names, fraction in s.execute(query)]


def _scores(url: str, ids: list[int]) -> dict[int, dict[str, Any]]:
    with session_scope(url) as s:
        return {i: scores or {} for i, scores in s.execute(select(Submission.id, Submission.scores)
                                                           .where(Submission.id.in_(ids)))}


def _run_metrics(url: str, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    with session_scope(url) as s:
        return {j: m or {} for j, m in s.execute(select(Run.job_id, Run.metrics).where(Run.job_id.in_(job_ids)))}


def with_ci(board: pd.DataFrame, key: str) -> list[str]:
    metric = METRICS[key]
    cells = []
    for value, low, high in zip(board[key], board[f"{key}_lo"], board[f"{key}_hi"]):
        text = "-" if pd.isna(value) else metric_text(metric, value, 1)
        if not (pd.isna(low) or pd.isna(high)):
            text += f" [{metric_text(metric, low, 1)}, {metric_text(metric, high, 1)}]"
        cells.append(text)
    return cells


def board_text(url: str, slug: str, task: str, classes: int, split: str = "test") -> str:
    board = leaderboard(url, slug, task=task, limit=None)
    if board.empty:
        return f"{slug}: (no entries)"
    scores = _scores(url, [int(i) for i in board["submission_id"]])
    view = pd.DataFrame({"rank": board["rank"], "entry": board["entry"]})
    if task == "classification":
        for key in ("top1_err", "top5_err"):
            view[f"{METRICS[key].display} [95% CI]"] = with_ci(board, key)
        view["vs leader"] = board["vs_leader"]
        chance = f"chance: {metric_text(METRICS['top1_err'], 1 - 1 / classes, 1)} top-1 error ({classes} classes)"
    else:
        view[METRICS["map50"].display] = with_ci(board, "map50")
        runs = _run_metrics(url, [r for r in board["run_id"] if isinstance(r, str)])
        view["sliding-window boxes (val)"] = [
            _sliding_window(runs.get(r) if isinstance(r, str) else None) for r in board["run_id"]]
        chance = "sliding-window boxes: the same network scoring the exhaustive windows R-CNN replaced"
    view["split"] = split
    view["images"] = [scores.get(int(i), {}).get("n_images", "?") for i in board["submission_id"]]
    view.index = [""] * len(view)
    return f"{slug} ({task}; {chance})\n{view.to_string(index=False)}"


def _sliding_window(metrics: dict[str, Any] | None) -> str:
    by = (metrics or {}).get("map50_by_proposals") or {}
    value = by.get("sliding_window")
    return "-" if value is None else metric_text(METRICS["map50"], value, 1)


def print_boards(url: str, suite: str, out: TextIO = sys.stdout) -> int:
    """Prints every board of the suite's challenges; the number printed."""
    found = suite_challenges(url, suite)
    for slug, task, classes, split in found:
        print(f"\n{board_text(url, slug, task, classes, split)}", file=out)
    if not found:
        print(f"\nno run of suite {suite!r} was scored on a challenge (create one on its test split first)", file=out)
    return len(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.board", description=__doc__.splitlines()[0],
                                     epilog="example: %(prog)s --suite demo --db sqlite:///convbench.db")
    parser.add_argument("--suite", required=True, help="the suite's name")
    parser.add_argument("--db", default=None, help="database URL (default: $CONVBENCH_DB or sqlite:///convbench.db)")
    args = parser.parse_args(argv)
    from db.engine import exit_status, open_database
    from orchestrator.cli import leaderboard_hint

    def command() -> int:
        url = open_database(args.db)
        print_boards(url, args.suite)
        print(f"\n{leaderboard_hint(url)}")
        return 0

    return exit_status(command, args.db)


if __name__ == "__main__":
    sys.exit(main())
