"""What the site and the CLI show, as pandas frames. Nothing here reads held labels."""
from __future__ import annotations

import pandas as pd
from sqlalchemy import select

from db.engine import session_scope
from db.schema import Run

RUN_COLUMNS = {
    "arch": "architecture", "family": "family", "dataset": "dataset", "suite": "suite", "seed": "seed",
    "state": "state", "top1_err": "top-1 err", "top5_err": "top-5 err", "map50": "mAP@0.5", "params": "params",
    "flops": "FLOPs", "input_size": "input", "train_ips": "train img/s", "wall_s": "wall s", "hardware": "hardware",
    "finished_at": "finished", "job_id": "job",
}


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
