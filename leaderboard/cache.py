"""The pages' reads, shared between sessions for a few seconds and keyed by the database's state.

Fifty people opening the board at once would run its queries, and shape their rows into tables, charts
and exports, fifty times; one run serves them all here.
The key holds a cheap summary of what the reads read (how many submissions, the newest id, how many runs
are in each state), taken from indexes on every render: a new submission or a job changing state changes
it, so a page never shows a board older than the last submission, and the TTL bounds what the key does
not see (a running job's epochs and log) and how long an entry nobody asks for is kept.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st
from sqlalchemy import func, select

from db.engine import session_scope
from db.schema import Challenge, Run, Submission
from leaderboard.queries import STATES

TTL_S = 5
SWITCH = "CONVBENCH_SITE_CACHE"  # "off": every read goes to the database (the load benchmark's baseline)
MAX_ENTRIES = 256  # distinct (query, arguments, state) results kept; a page of 200 rows is well under 1 MB
T = TypeVar("T")
WATCHED = ("submissions", "runs")


def database_state(url: str | None, watch: tuple[str, ...] = WATCHED) -> tuple[Any, ...]:
    """What changes when anything a page reads changes, from indexes only (no scan of the runs' wide rows):

    - submissions: how many there are and the newest id, and the same of the challenges (primary keys);
    - runs: how many are in each state (the (suite, state) index) and the newest queued (created_at index).

    A finished epoch of a running job changes neither: the TTL bounds how late a page shows it."""
    parts: list[Any] = []
    if "submissions" in watch:
        parts += [select(func.count(Submission.id)).scalar_subquery(),
                  select(func.max(Submission.id)).scalar_subquery(),
                  select(func.count(Challenge.id)).scalar_subquery(),
                  select(func.max(Challenge.id)).scalar_subquery()]
    if "runs" in watch:
        parts += [select(func.max(Run.created_at)).scalar_subquery(),
                  *(select(func.count()).select_from(Run).where(Run.state == state).scalar_subquery()
                    for state in STATES)]
    with session_scope(url) as s:
        row = s.connection().execute(select(*parts)).one()
    return tuple(str(v) for v in row)  # timestamps as text: hashable and the same on both databases


@st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)
def _cached(name: str, _function: Callable[..., Any], state: tuple[Any, ...], args: tuple[Any, ...],
            kwargs: tuple[tuple[str, Any], ...]) -> Any:
    del state  # only part of the key; `_function` is not (a page script defines its functions anew each run)
    return _function(*args, **dict(kwargs))


def read(function: Callable[..., T], url: str | None, *args: Any, **kwargs: Any) -> T:
    """`function(url, *args, **kwargs)`, from the shared cache when the database has not changed since it ran.

    `function` is a query of leaderboard.queries, or a page's function of the database alone that shapes
    what it shows (tables as text, chart specs, exports), so a session that hits the cache does none of
    that work either. Functions are told apart by module and name. `watch`: the tables whose changes
    renew the entry ("submissions": submissions and challenges; "runs"); by default both."""
    # Popped rather than a parameter, so that a page's filters pass through **kwargs typed as they are.
    watch: tuple[str, ...] = kwargs.pop("watch", WATCHED)
    if os.environ.get(SWITCH, "on") == "off":
        return function(url, *args, **kwargs)
    name = f"{function.__module__}.{function.__qualname__}"
    return _cached(name, function, database_state(url, watch), (url, *args), tuple(sorted(kwargs.items())))
