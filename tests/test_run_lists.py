"""The run lists of the no-challenge board, Architectures and Campaign: filtered, ordered, paged and counted by
the database, they must show what the whole list, filtered and aggregated in pandas, would."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert, select
from streamlit.testing.v1 import AppTest
from test_site import APP

from bench.site_fixture import run_rows
from db.engine import make_engine, session_scope
from db.schema import Run
from leaderboard.queries import (
    BOARD_PAGE,
    architecture_facets,
    architecture_points,
    architectures_frame,
    campaign_counts,
    campaign_frame,
    runs_frame,
)
from leaderboard.site_data import state_counts, suite_states

RUNS = 450  # more than two pages of BOARD_PAGE jobs, and of finished runs


def add_runs(url: str, n: int = RUNS) -> pd.DataFrame:
    """`n` runs shaped like the orchestrator's (every state, 20 suites, classification and detection), read back
    whole: the reference the paged queries are checked against."""
    rows = run_rows(n, np.random.default_rng(1))
    for i, row in enumerate(rows):  # costs that differ, for the charts' means
        row.update(params=1_000_000 + 1_000 * i, flops=1e9 + 1e7 * i)
    for i, row in enumerate(rows[:4]):  # ties on the ranking's first key: the next keys decide
        row.update(state="done", task="classification", top5_err=0.01, top1_err=0.1 + i % 2 / 10)
    rows[5]["created_at"] = rows[6]["created_at"]  # a tie on the campaign's order: the job id decides
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(Run.__table__), rows)
    engine.dispose()
    with session_scope(url) as s:
        return pd.DataFrame(s.execute(select(Run.__table__)).mappings().all())


def ranked(runs: pd.DataFrame) -> list[str]:
    order = runs.sort_values(["top5_err", "top1_err", "map50", "job_id"], ascending=[True, True, False, True],
                             na_position="last", kind="stable")
    return order["job_id"].tolist()


def records(frame: pd.DataFrame) -> list[tuple]:
    """The rows, in an order of their own: the database's string order depends on its collation."""
    return sorted(frame.itertuples(index=False, name=None))


def pages(fetch, size: int) -> list[pd.DataFrame]:
    whole = fetch(limit=None, offset=0)
    found = [fetch(limit=size, offset=o) for o in range(0, len(whole) + size, size)]
    assert all(page.attrs["total"] == len(whole) for page in found)
    assert found[-1].empty  # a page past the end: nothing, and still the total
    assert pd.concat(found, ignore_index=True)["job_id"].tolist() == whole["job_id"].tolist()
    return found


def test_runs_and_architectures_rank_filter_and_page_in_sql(db_url: str) -> None:
    runs = add_runs(db_url)
    done = runs[runs["state"] == "done"]
    whole = runs_frame(db_url, limit=None)
    assert whole["job_id"].tolist() == ranked(done) and whole.attrs["total"] == len(done)
    first = runs_frame(db_url)
    assert len(first) == BOARD_PAGE and first["job_id"].tolist() == ranked(done)[:BOARD_PAGE]
    assert runs_frame(db_url, suite="suite-3", state=None, limit=None)["job_id"].tolist() == \
        ranked(runs[runs["suite"] == "suite-3"])
    pages(lambda **page: runs_frame(db_url, **page), 37)

    facets = architecture_facets(db_url)
    reference = done.groupby(["dataset", "family", "suite"]).size().rename("runs").reset_index()
    assert records(facets) == records(reference)

    assert architectures_frame(db_url, limit=None)["job_id"].tolist() == ranked(done)
    chosen = {"datasets": ["imagenet", "synthetic-scenes"], "families": ["resnet", "vgg", "no-such-family"],
              "suites": [f"suite-{i}" for i in (1, 3, 5, 9, 11, 15, 19)]}
    keep = (done["dataset"].isin(chosen["datasets"]) & done["family"].isin(chosen["families"])
            & done["suite"].isin(chosen["suites"]))
    assert keep.sum() > 3
    picked = architectures_frame(db_url, **chosen, limit=None)
    assert picked["job_id"].tolist() == ranked(done[keep]) and picked.attrs["total"] == keep.sum()
    pages(lambda **page: architectures_frame(db_url, **chosen, **page), 2)
    nothing = architectures_frame(db_url, families=[])
    assert nothing.empty and nothing.attrs["total"] == 0


@pytest.mark.parametrize("chosen", [{}, {"datasets": ["synthetic"], "suites": ["suite-2", "suite-4", "suite-8"]}])
def test_architecture_points_are_the_means_per_architecture_and_dataset(db_url: str, chosen: dict) -> None:
    runs = add_runs(db_url)
    runs.loc[runs.index[:40], "flops"] = None  # runs without a measured cost are not charted
    with session_scope(db_url) as s:
        s.execute(Run.__table__.update().where(Run.job_id.in_(runs["job_id"][:40].tolist())).values(flops=None))
    keep = runs["state"].eq("done") & runs["top1_err"].notna() & runs["flops"].notna() & runs["params"].notna()
    for column, values in (("dataset", chosen.get("datasets")), ("suite", chosen.get("suites"))):
        if values is not None:
            keep &= runs[column].isin(values)
    scored = runs[keep]
    reference = (scored.assign(top1_acc=1 - scored["top1_err"], params_m=scored["params"] / 1e6,
                               gflops=scored["flops"] / 1e9)
                 .groupby(["arch", "family", "dataset"], as_index=False)
                 .agg(top1_acc=("top1_acc", "mean"), params_m=("params_m", "mean"), gflops=("gflops", "mean"),
                      runs=("job_id", "count"))
                 .sort_values(["top1_acc", "arch", "dataset"], ascending=[False, True, True]))
    points = architecture_points(db_url, **chosen)
    assert len(points) == len(reference) >= 3 and points["runs"].sum() == len(scored)
    for column in ("arch", "family", "dataset", "runs"):
        assert points[column].tolist() == reference[column].tolist(), column
    for column in ("top1_acc", "params_m", "gflops"):
        assert points[column].tolist() == pytest.approx(reference[column].tolist()), column
    assert architecture_points(db_url, families=[]).empty


def test_campaign_counts_filters_and_pages_in_sql(db_url: str) -> None:
    runs = add_runs(db_url)
    counts = campaign_counts(db_url)
    reference = runs.groupby(["suite", "state"]).size().rename("jobs").reset_index()
    assert records(counts) == records(reference)
    assert state_counts(counts) == {s: int((runs["state"] == s).sum()) for s in ("queued", "running", "done", "failed")}
    table = suite_states(counts).set_index("suite")
    crosstab = pd.crosstab(runs["suite"], runs["state"])
    assert (table.loc[crosstab.index, crosstab.columns] == crosstab).all().all()
    assert table["total"].to_dict() == runs["suite"].value_counts().to_dict()

    newest = runs.sort_values(["created_at", "job_id"], ascending=[False, True], kind="stable")
    whole = campaign_frame(db_url, limit=None)
    assert whole["job_id"].tolist() == newest["job_id"].tolist() and whole["created_at"].dt.tz is not None
    assert campaign_frame(db_url)["job_id"].tolist() == newest["job_id"].tolist()[:BOARD_PAGE]
    pages(lambda **page: campaign_frame(db_url, **page), BOARD_PAGE)
    suites, states = ["suite-1", "suite-5", "suite-6"], ["failed", "queued"]
    keep = newest["suite"].isin(suites) & newest["state"].isin(states)
    picked = campaign_frame(db_url, suites=suites, states=states, limit=None)
    assert picked["job_id"].tolist() == newest[keep]["job_id"].tolist() and picked.attrs["total"] == keep.sum() > 0
    failed = campaign_frame(db_url, states=["failed"])
    assert failed["error"].notna().all() and failed.attrs["total"] == (runs["state"] == "failed").sum()
    assert campaign_frame(db_url, suites=[]).attrs["total"] == 0


def number_input(app: AppTest):
    (picker,) = [n for n in app.number_input if n.label.startswith("Page, of")]
    return picker


def links(jobs) -> list[str]:
    """Job ids as the tables show them: each a link to its Run detail."""
    return [f"run?job={job}" for job in jobs]


def test_pages_show_a_page_at_a_time_with_a_picker(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    from db.engine import create_schema

    runs = add_runs(create_schema(url))
    monkeypatch.setenv("CONVBENCH_DB", url)
    done = runs[runs["state"] == "done"]
    app = AppTest.from_file(APP, default_timeout=60).run()  # no challenge: the runs by validation error
    assert not app.exception
    table = app.dataframe[0].value
    assert table["job"].tolist() == ranked(done)[:BOARD_PAGE] and table["rank"].tolist()[:2] == [1, 2]
    picker = number_input(app)
    assert f"rows 1–200 of {len(done)}" in picker.label
    picker.set_value(2).run()
    assert app.dataframe[0].value["job"].tolist() == ranked(done)[BOARD_PAGE:2 * BOARD_PAGE]
    assert app.dataframe[0].value["rank"].tolist()[0] == BOARD_PAGE + 1

    app.switch_page("views/campaign.py").run()
    assert not app.exception
    assert {m.label: int(m.value) for m in app.metric}["done"] == len(done)
    newest = runs.sort_values(["created_at", "job_id"], ascending=[False, True], kind="stable")["job_id"].tolist()
    assert app.dataframe[1].value["job"].tolist() == links(newest[:BOARD_PAGE])
    failed = runs[runs["state"] == "failed"]
    assert len(app.expander) == len(set(newest[:BOARD_PAGE]) & set(failed["job_id"])) > 0  # this page's failures
    assert any(h.value == "Failed jobs on this page" for h in app.subheader)
    last = -(-RUNS // BOARD_PAGE)
    number_input(app).set_value(last).run()
    assert app.dataframe[1].value["job"].tolist() == links(newest[(last - 1) * BOARD_PAGE:])
    app.multiselect[1].set_value(["failed"]).run()  # another filter: back to page 1, here the only one
    assert sorted(app.dataframe[1].value["job"]) == sorted(links(failed["job_id"]))
    assert not [n for n in app.number_input if n.label.startswith("Page, of")]
    assert len(app.expander) == len(failed) and any(h.value == "Failed jobs" for h in app.subheader)

    app.switch_page("views/architectures.py").run()
    assert not app.exception
    assert app.dataframe[0].value["job"].tolist() == links(ranked(done)[:BOARD_PAGE])
    assert number_input(app).label.startswith(f"Page, of {-(-len(done) // BOARD_PAGE)}")
    assert len(app.get("vega_lite_chart")) == 4  # error vs GFLOPs, vs training time, two learning-curve series
    assert app.multiselect[3].label == "Runs" and app.multiselect[3].value == ranked(done)[:3]
