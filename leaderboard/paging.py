"""A page of a long list on a site page: the database pages (LIMIT/OFFSET) and counts; this keeps the page number.

`fetch(offset)` returns one page as a frame whose `attrs["total"]` is how many rows the whole list has
(leaderboard.queries' paged functions do). The page number lives in st.session_state under a key the
caller names after what the list shows, so another filter starts again at page 1.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from leaderboard.queries import BOARD_PAGE


def page_key(name: str, *choices: Any) -> str:
    """A session-state key for the page number of list `name` under these filter choices."""
    return f"{name}-page-{hashlib.sha1(repr(choices).encode()).hexdigest()[:12]}" if choices else f"{name}-page"


def fetch_page(key: str, fetch: Callable[[int], pd.DataFrame], size: int = BOARD_PAGE) -> tuple[pd.DataFrame, int]:
    """The picked page of the list and its number; back to page 1 when the list has shrunk below it."""
    page = int(st.session_state.get(key, 1))
    frame = fetch((page - 1) * size)
    if page > 1 and frame.empty:  # the list shrank since the page was picked
        page = st.session_state[key] = 1
        frame = fetch(0)
    return frame, page


def page_picker(key: str, page: int, frame: pd.DataFrame, size: int = BOARD_PAGE, note: str = "") -> None:
    """The page number input, when the list has more than one page: which rows these are, of how many."""
    total = int(frame.attrs.get("total", len(frame)))
    pages = max(1, -(-total // size))
    if pages > 1:
        first = (page - 1) * size + 1
        st.number_input(f"Page, of {pages}: rows {first:,}–{first + len(frame) - 1:,} of {total:,} "
                        f"({size} a page{note})", min_value=1, max_value=pages, key=key)
