"""Run detail: everything that produced a result (ARCHITECTURE.md invariant 4). Link here with `?job=<job_id>`."""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from db.engine import database_url
from leaderboard.queries import run_choices, run_record, run_submissions
from leaderboard.site_data import CURVES, run_label, spreadsheet_frame
from workers.metric_registry import column_metrics

LOG_SHOWN_CHARS = 200_000  # the driver caps what it stores; this caps a row written some other way
LABEL_KINDS = {"devkit": "devkit", "loc_csv": "Kaggle LOC csv", "val_folders": "val class folders"}


def choose_run(choices: pd.DataFrame) -> str:
    labels = {job: f"{run_label(a, d, s, job)} · {state}" for job, a, d, s, state in
              zip(choices["job_id"], choices["arch"], choices["dataset"], choices["seed"], choices["state"])}
    requested = st.query_params.get("job")
    if requested and requested not in labels:
        st.warning(f"No run with job id {requested!r}; showing the newest run instead.")
    jobs = list(labels)
    job = st.selectbox("Run", jobs, index=jobs.index(requested) if requested in labels else 0, format_func=labels.get)
    st.query_params["job"] = job  # the address names the run shown, so it can be shared
    return job


def label_source_text(source: Any) -> str | None:
    """The metrics' label_source as one line: "devkit <path> (sha256 1a2b3c4d5e6f…)"; None when not recorded."""
    if not isinstance(source, dict) or not source.get("kind"):
        return None
    kind = str(source["kind"])
    text = " ".join(str(part) for part in (LABEL_KINDS.get(kind, kind), source.get("path")) if part)
    return f"{text} (sha256 {str(source['sha256'])[:12]}…)" if source.get("sha256") else text


def provenance_table(run: dict[str, Any]) -> pd.DataFrame:
    rows = [("job id", run["job_id"]), ("suite", run["suite"]), ("task", run["task"]), ("state", run["state"]),
            ("seed", run["seed"]), ("git commit", run["git_commit"]), ("hardware", run["hardware"]),
            ("node", run["node"]), ("launcher", run["launcher"]), ("checkpoint", run["checkpoint"]),
            ("log", run["log_path"]), ("attempts", run["attempts"]), ("created", run["created_at"]),
            ("started", run["started_at"]), ("finished", run["finished_at"])]
    metrics = run["metrics"] if isinstance(run["metrics"], dict) else {}
    if (labels := label_source_text(metrics.get("label_source"))) is not None:
        rows.insert(8, ("validation labels", labels))  # after the node: what the run read, then where it wrote
    return pd.DataFrame({"field": [k for k, _ in rows], "value": ["" if v is None else str(v) for _, v in rows]})


def result_table(run: dict[str, Any]) -> pd.DataFrame:
    keys = (*column_metrics(), "epochs_done", "params", "flops", "input_size", "train_ips", "eval_ips", "wall_s",
            "peak_mem_mb")
    return pd.DataFrame({"field": list(keys), "value": ["" if run[k] is None else str(run[k]) for k in keys]})


def show_history(history: list[Any]) -> None:
    records = [r for r in history or [] if isinstance(r, dict)]
    if not records:
        st.caption("No per-epoch history recorded.")
        return
    frame = pd.DataFrame(records)
    st.dataframe(frame, hide_index=True)
    series = [c for c in CURVES if c in frame]
    if "epoch" in frame and series:
        st.line_chart(frame.set_index("epoch")[series])


def show_run(url: str, run: dict[str, Any]) -> None:
    st.header(f"{run['arch']} on {run['dataset']}")
    if run["error"]:
        st.error(run["error"])
    left, right = st.columns(2)
    with left:
        st.subheader("Provenance")
        st.table(provenance_table(run), hide_index=True)
        st.subheader("Package versions")
        st.json(run["versions"] or {})
    with right:
        st.subheader("Result")
        st.table(result_table(run), hide_index=True)
        entries = run_submissions(url, run["job_id"])
        if not entries.empty:
            st.subheader("Challenge entries")
            # Team names are user text, and the table's toolbar downloads CSV: escaped as every export is.
            st.dataframe(spreadsheet_frame(entries), hide_index=True, column_config={"score": st.column_config.NumberColumn(format="percent")})
    st.subheader("Config")
    st.json(run["config"] or {})
    st.subheader("Metrics")
    st.json(run["metrics"] or {}, expanded=1)
    st.subheader("History")
    show_history(run["history"])
    st.subheader("Log")
    # Only the text the driver stored (capped, read inside its storage root): the site opens no file a row names.
    text = run["log_text"]
    if text:
        st.code(text if len(text) <= LOG_SHOWN_CHARS else "…\n" + text[-LOG_SHOWN_CHARS:], language=None)
    else:
        st.caption("No log recorded.")


def main() -> None:
    url = database_url()
    st.title("Run detail")
    choices = run_choices(url)
    if choices.empty:
        st.info("No runs yet.")
        return
    run = run_record(url, choose_run(choices))
    if run is None:  # deleted between the two queries
        st.warning("That run is gone.")
        return
    show_run(url, run)


main()
