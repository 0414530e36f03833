"""How every page and export writes a value: one place, so a percentage reads the same everywhere.

Percentages and their intervals to DECIMALS places, counts with thousands separators, parameters in
millions, FLOPs in billions, durations as a person says them, metric names from the metric registry,
and nothing at all (an empty cell) where a value is missing: never "None", "nan" or "NaT".

Pure functions of values and pandas frames: a page formats what leaderboard.queries returned just
before it shows it, and a test checks the rules without a browser.
"""
from __future__ import annotations

import math
import numbers
import re
from datetime import datetime
from typing import Any

import pandas as pd

from workers.metric_registry import METRICS, Metric

DECIMALS = 2  # of a percentage, its interval, a parameter count in M and a GFLOPs figure
ROW_PX, HEADER_PX, MAX_TABLE_ROWS = 35, 38, 25  # st.dataframe's default row height; taller tables scroll
# Names of the per-epoch series the loops log that are not metrics of the registry.
SERIES_NAMES = {"train_loss": "train loss", "val_loss": "validation loss", "lr": "learning rate",
                "images_per_s": "images/s", "epoch": "epoch", "epoch_s": "epoch time (s)"}
PHASES = {"val": "validation", "train": "train", "test": "test"}


def missing(value: Any) -> bool:
    """None, NaN, NA and NaT: what a table shows as an empty cell."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or a dict: present
        return False


def number(value: Any, digits: int = DECIMALS) -> str:
    """A float to `digits` places with thousands separators; "" when missing."""
    return "" if missing(value) else f"{float(value):,.{digits}f}"


def percent(value: Any, digits: int = DECIMALS) -> str:
    """A fraction as a percentage: 0.12345 -> "12.35%"."""
    return "" if missing(value) else f"{100 * float(value):.{digits}f}%"


def metric_value(metric: Metric | str, value: Any, digits: int = DECIMALS) -> str:
    """A metric's value in its unit: a percentage for a fraction shown in percent, else a plain number."""
    metric = METRICS[metric] if isinstance(metric, str) else metric
    return percent(value, digits) if metric.percent else number(value, digits)


def interval(metric: Metric | str, low: Any, high: Any, digits: int = DECIMALS) -> str:
    """A 95% interval in the same precision as the value: "12.35–15.00%"; "" when either bound is missing."""
    metric = METRICS[metric] if isinstance(metric, str) else metric
    if missing(low) or missing(high):
        return ""
    if metric.percent:
        return f"{100 * float(low):.{digits}f}–{100 * float(high):.{digits}f}%"
    return f"{float(low):.{digits}f}–{float(high):.{digits}f}"


def count(value: Any) -> str:
    """A whole number with thousands separators: 188130688 -> "188,130,688"."""
    return "" if missing(value) else f"{round(float(value)):,}"


def millions(value: Any, digits: int = DECIMALS) -> str:
    """A parameter count in millions (the column says "params (M)"): 11181642 -> "11.18"."""
    return "" if missing(value) else f"{float(value) / 1e6:,.{digits}f}"


def giga(value: Any, digits: int = DECIMALS) -> str:
    """FLOPs in billions (the column says "GFLOPs"): 1.82e9 -> "1.82"."""
    return "" if missing(value) else f"{float(value) / 1e9:,.{digits}f}"


def rate(value: Any) -> str:
    """A throughput (images/s): whole numbers with separators; below 10, one decimal so it is not 0."""
    if missing(value):
        return ""
    return f"{float(value):,.0f}" if abs(float(value)) >= 10 else f"{float(value):.1f}"


def duration(seconds: Any) -> str:
    """Seconds as a person says them: "42 s", "3 min 05 s", "2 h 07 min", "3 d 4 h"."""
    if missing(seconds):
        return ""
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    whole = round(s)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s"


def timestamp(value: Any) -> str:
    """A moment in UTC to the minute: "2025-03-01 09:00 UTC"; naive datetimes are taken as UTC."""
    if missing(value):
        return ""
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return f"{stamp:%Y-%m-%d %H:%M} UTC"


def plural(n: int, word: str, many: str | None = None) -> str:
    """ "1 thread", "2 threads"."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


_ONE_PLURAL = re.compile(r"(?<![\d.,])1 (thread|worker|GPU|CPU|core|epoch|run|job)s\b")


def singular_text(text: Any) -> str:
    """Stored text as shown: "Test CPU, 1 threads" (written before the worker said it right) -> "1 thread"."""
    return "" if missing(text) else _ONE_PLURAL.sub(r"1 \1", str(text))


def text(value: Any) -> str:
    """Any cell as text: "" when missing, a float to DECIMALS places, a timestamp in UTC, else str()."""
    if missing(value):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (pd.Timestamp, datetime)):
        return timestamp(value)
    if isinstance(value, numbers.Integral):  # numpy's integers too
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return number(value)
    return str(value)


def metric_name(key: str) -> str:
    """A metric's display name from the registry; a logged series' name ("val_top5_err" -> "validation
    top-5 err", "train_loss" -> "train loss"); else the key with spaces."""
    if key in METRICS:
        return METRICS[key].display
    if key in SERIES_NAMES:
        return SERIES_NAMES[key]
    phase, _, rest = key.partition("_")
    if phase in PHASES and rest in METRICS:
        return f"{PHASES[phase]} {METRICS[rest].display}"
    return key.replace("_", " ")


def series_metric(key: str) -> Metric | None:
    """The registry's metric behind a logged series ("val_top5_err" -> top5_err), None for a loss or a rate."""
    if key in METRICS:
        return METRICS[key]
    _, _, rest = key.partition("_")
    return METRICS.get(rest)


def series_value(key: str, value: Any) -> str:
    """A logged series' value: a metric in its unit, a loss or a learning rate as small() writes it."""
    metric = series_metric(key)
    if metric is not None:
        return metric_value(metric, value)
    if missing(value):
        return ""
    if key == "epoch":
        return count(value)
    if key == "images_per_s":
        return rate(value)
    return small(value) if isinstance(value, numbers.Real) else str(value)


def small(value: Any, digits: int = DECIMALS) -> str:
    """A loss or a learning rate: `digits` places, or in scientific notation below 0.1 so that 0.0003 is not
    0.00: "0.80", "3.33e-02"."""
    if missing(value):
        return ""
    v = float(value)
    return f"{v:.{digits}f}" if v == 0 or abs(v) >= 0.1 else f"{v:.{digits}e}"


def table_height(rows: int, cap: int = MAX_TABLE_ROWS) -> int:
    """Pixels for st.dataframe to show `rows` rows without an inner scroll bar, up to `cap` rows."""
    return HEADER_PX + ROW_PX * max(1, min(rows, cap)) + 3


def drop_empty(frame: pd.DataFrame, keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """`frame` without the columns that hold nothing on any row (an mAP column on a classification
    table); the columns of `keep` stay."""
    empty = [c for c in frame.columns if c not in keep and frame[c].map(lambda v: missing(v) or v == "").all()]
    return frame.drop(columns=empty)


def text_frame(frame: pd.DataFrame, formats: dict[str, Any] | None = None) -> pd.DataFrame:
    """Every cell of `frame` as text: the column's formatter from `formats` where it has one, else text()."""
    formats = formats or {}
    return pd.DataFrame({c: [formats.get(c, text)(v) for v in frame[c]] for c in frame.columns}, index=frame.index)
