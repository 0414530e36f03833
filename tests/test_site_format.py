"""The site's one formatting layer (leaderboard.formatting), the cache key that keeps cached pages current,
and the Campaign charts' data: pure functions, checked without a browser."""
from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from db.engine import create_schema, session_scope
from db.schema import Run
from leaderboard import formatting as fmt
from leaderboard.cache import database_state
from leaderboard.site_data import state_timeline, throughput
from workers.metric_registry import METRICS

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", [None, float("nan"), np.nan, pd.NA, pd.NaT, np.float64("nan")])
def test_missing_values_are_blank_everywhere(value) -> None:
    for show in (fmt.percent, fmt.number, fmt.count, fmt.millions, fmt.giga, fmt.rate, fmt.duration, fmt.timestamp,
                 fmt.text, lambda v: fmt.metric_value("top5_err", v), lambda v: fmt.interval("top5_err", v, 0.1)):
        assert show(value) == ""


def test_percentages_and_intervals_share_one_precision() -> None:
    assert fmt.percent(0.9) == "90.00%" and fmt.percent(0.4375) == "43.75%" and fmt.percent(0.475) == "47.50%"
    assert fmt.metric_value(METRICS["top5_err"], 0.22748775255196038) == "22.75%"
    assert fmt.interval("top5_err", 0.1, 0.2) == "10.00–20.00%"
    assert fmt.interval("top5_err", 0.1, None) == ""
    assert fmt.percent(0.12345, digits=1) == "12.3%"


def test_counts_params_flops_rates() -> None:
    assert fmt.count(188130688.0) == "188,130,688" and fmt.count(np.int64(1234)) == "1,234"
    assert fmt.millions(11_181_642) == "11.18" and fmt.millions(128_807_306) == "128.81"
    assert fmt.giga(1.82e9) == "1.82" and fmt.giga(2.9e11) == "290.00"
    assert fmt.rate(900.4) == "900" and fmt.rate(12_345.6) == "12,346" and fmt.rate(2.34) == "2.3"
    assert fmt.text(np.float64(0.22748775255196038)) == "0.23" and fmt.text(np.int64(3)) == "3"
    assert fmt.text(True) == "yes" and fmt.text("None") == "None"  # only a missing value is blanked, not text


def test_durations_read_as_people_say_them() -> None:
    assert [fmt.duration(s) for s in (4.25, 42, 59.4, 185, 3600, 7620, 3 * 86400 + 4 * 3600 + 5)] == [
        "4.2 s", "42 s", "59 s", "3 min 05 s", "1 h 00 min", "2 h 07 min", "3 d 4 h"]


def test_timestamps_are_utc_to_the_minute() -> None:
    assert fmt.timestamp(T0) == "2025-03-01 09:00 UTC"
    assert fmt.timestamp(datetime(2025, 3, 1, 9, 0)) == "2025-03-01 09:00 UTC"  # SQLite's naive UTC
    assert fmt.timestamp(pd.Timestamp("2025-03-01 10:00", tz="Europe/Paris")) == "2025-03-01 09:00 UTC"


def test_singular_and_plural() -> None:
    assert fmt.plural(1, "thread") == "1 thread" and fmt.plural(2, "thread") == "2 threads"
    assert fmt.plural(1, "entry", "entries") == "1 entry" and fmt.plural(3, "entry", "entries") == "3 entries"
    assert fmt.singular_text("Test CPU, 1 threads") == "Test CPU, 1 thread"
    assert fmt.singular_text("Test CPU, 11 threads") == "Test CPU, 11 threads"
    assert fmt.singular_text("x, 2.1 threads") == "x, 2.1 threads"


def test_metric_names_come_from_the_registry() -> None:
    assert fmt.metric_name("top5_err") == METRICS["top5_err"].display == "top-5 err"
    assert fmt.metric_name("val_top5_err") == "validation top-5 err"
    assert fmt.metric_name("val_map50") == "validation mAP@0.5"
    assert fmt.metric_name("train_loss") == "train loss" and fmt.metric_name("lr") == "learning rate"
    assert fmt.metric_name("some_new_key") == "some new key"
    assert fmt.series_value("val_top1_err", 0.2) == "20.00%" and fmt.series_value("train_loss", 2.4 / 3) == "0.80"
    assert fmt.series_value("lr", 0.1 / 3) == "3.33e-02" and fmt.series_value("epoch", 3) == "3"
    assert fmt.small(0.0) == "0.00" and fmt.small(0.12345) == "0.12" and fmt.small(0.0003) == "3.00e-04"


def test_tables_are_tall_enough_and_empty_columns_go() -> None:
    assert fmt.table_height(5) > fmt.table_height(1) and fmt.table_height(5) >= 5 * fmt.ROW_PX + fmt.HEADER_PX
    assert fmt.table_height(10_000) == fmt.table_height(fmt.MAX_TABLE_ROWS)
    frame = pd.DataFrame({"a": ["1", "2"], "mAP": [None, float("nan")], "b": ["", ""], "keep": ["", ""]})
    assert list(fmt.drop_empty(frame, keep=("keep",)).columns) == ["a", "keep"]
    texts = fmt.text_frame(pd.DataFrame({"x": [0.123456, None], "when": [T0, pd.NaT]}))
    assert texts.to_dict("list") == {"x": ["0.12", ""], "when": ["2025-03-01 09:00 UTC", ""]}


def test_the_cache_key_changes_with_every_write_a_page_reads(tmp_path) -> None:
    url = create_schema(f"sqlite:///{tmp_path / 'state.db'}")
    empty = database_state(url)
    boards = database_state(url, ("submissions",))
    assert database_state(url) == empty  # reading changes nothing
    with session_scope(url) as session:
        session.add(Run(job_id="a", suite="s", arch="resnet18", dataset="d", state="queued", created_at=T0))
    queued = database_state(url)
    assert queued != empty
    steps = [{"state": "running", "started_at": T0 + timedelta(minutes=1), "attempts": 1},
             {"state": "done", "finished_at": T0 + timedelta(minutes=5), "top5_err": 0.1},
             {"state": "failed", "error": "x"}]
    seen = {empty, queued}
    for values in steps:
        with session_scope(url) as session:
            session.execute(sa.update(Run).where(Run.job_id == "a").values(**values))
        state = database_state(url)
        assert state not in seen, values
        seen.add(state)
    # A board watches submissions only: a campaign's runs changing state leave its cached pages alone.
    assert database_state(url, ("submissions",)) == boards


def test_campaign_timeline_and_throughput() -> None:
    hour = timedelta(hours=1)
    times = pd.DataFrame({
        "state": ["done", "done", "failed", "running", "queued"],
        "created_at": [T0, T0, T0, T0, T0 + 3 * hour],
        "started_at": [T0, T0 + hour, T0 + hour, T0 + 2 * hour, None],
        "finished_at": [T0 + hour, T0 + 2 * hour, None, None, None],
    })
    for column in ("created_at", "started_at", "finished_at"):
        times[column] = pd.to_datetime(times[column], utc=True)
    timeline = state_timeline(times, points=4)  # 0 h, 1 h, 2 h, 3 h
    at = {(t, s): n for t, s, n in timeline.itertuples(index=False)}
    assert at[(T0, "running")] == 1 and at[(T0, "queued")] == 3
    assert at[(T0 + 3 * hour, "done")] == 2 and at[(T0 + 3 * hour, "failed")] == 1  # failed at its start
    assert at[(T0 + 3 * hour, "running")] == 1 and at[(T0 + 3 * hour, "queued")] == 1
    for moment in timeline["time"].unique():  # every job is in one state from its queueing on
        assert timeline[timeline["time"] == moment]["jobs"].sum() == (times["created_at"] <= moment).sum()
    rates = throughput(times, buckets=2)
    assert rates["jobs"].sum() == 2 and set(rates["state"]) == {"done"}
    assert math.isclose(rates["per_hour"].sum() * 0.5, 2)  # 2 buckets over the hour between the two finishes
    assert throughput(times.iloc[3:]).empty and state_timeline(times.iloc[:0]).empty
