"""The Compare page and the board's standings panel (issue #15, point 4) rendered by AppTest against a real gate:
a constructed pair whose paired difference and McNemar p-value are known, and no private score anywhere on either
page before the close (every element's text searched), while after it the private numbers are there."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gate_server import serving
from streamlit.testing.v1 import AppTest
from test_parts_phases import labels_and_parts, predictions, team

from db.engine import create_schema, session_scope
from db.schema import PrivateScore
from leaderboard.challenges import close_challenge, create_challenge
from leaderboard.gate_client import GATE_URL_ENV
from leaderboard.quota import submit

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"num_classes": 4, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 25}
# The private errors: neither may show on a page before the close, in any format (0.86, 86.00%, 86.0%, 86%).
PRIVATE = (0.86, 0.14)


def private_shown(text: str) -> list[str]:
    found = []
    for value in PRIVATE:
        fraction = re.escape(f"{value:.2f}")
        percent = re.escape(f"{100 * value:.0f}")
        found += re.findall(rf"(?<![\d.]){fraction}(?!\d)|(?<![\d.]){percent}(?:\.0+)?\s?%", text)
    return found


def texts(node: Any) -> Iterator[str]:
    """Every text of an element tree: each element's whole protobuf (labels, values, help, options, chart specs),
    and each table's cells."""
    proto = getattr(node, "proto", None)
    if proto is not None:
        yield str(proto)
    if type(node).__name__ in ("Dataframe", "Table"):
        yield node.value.to_csv()
    for child in getattr(node, "children", {}).values():
        yield from texts(child)


def page_text(app: AppTest) -> str:
    assert not app.exception, app.exception
    return "\n".join(texts(app._tree))


@pytest.fixture
def pair(tmp_path, monkeypatch) -> Iterator[tuple[str, str, dict[str, int]]]:
    """A challenge of 100 test images (50 public, 50 private) with two entries, a real gate, and the site's env.

    Public part: alpha right on 45 of 50, beta on 40; alpha alone right on 6 images, beta alone on 1, so the
    paired difference is -10 points and the exact McNemar p-value 2 * P(X <= 1 | 7, 1/2) = 0.125. Private part:
    alpha 86% wrong, beta 14% (the order flips at the close)."""
    url = create_schema(f"sqlite:///{tmp_path / 'pages.db'}")
    create_challenge(url, "pp", "synthetic", OPTIONS, title="Parts", quota=5)
    labels, private = labels_and_parts(url, "pp")
    public, hidden = sorted(set(labels) - private), sorted(private)
    assert len(public) == len(hidden) == 50
    alpha = set(public[:45]) | set(hidden[:7])
    beta = set(public[:39]) | {public[45]} | set(hidden[:43])
    ids = {}
    for name, right in (("alpha", alpha), ("beta", beta)):
        ids[name] = submit(url, team(url, name), "pp", predictions(labels, right), f"{name}.csv",
                           label=f"{name}-net").submission_id
    with session_scope(url) as session:  # the numbers this test hunts for are what the gate holds
        assert [round(session.get(PrivateScore, ids[n]).primary_score, 2) for n in ("alpha", "beta")] == list(PRIVATE)
    with serving(url) as gate:
        monkeypatch.setenv("CONVBENCH_DB", url)
        monkeypatch.setenv(GATE_URL_ENV, gate)
        yield url, gate, ids


def test_compare_page_shows_the_known_paired_difference_and_no_private_score(pair) -> None:
    url, _, ids = pair
    app = AppTest.from_file(str(ROOT / "leaderboard" / "views" / "compare.py"), default_timeout=60).run()
    text = page_text(app)
    assert "Compare two entries" in text and "exact McNemar" in text and "alpha-net (alpha)" in text  # it reads all
    assert [s.value for s in app.selectbox[1:]] == [ids["alpha"], ids["beta"]]
    assert app.metric[0].value == "-10.00%"
    body = "\n".join(m.value for m in app.markdown)
    assert "on the public part (50 images)" in body
    assert "p-value, exact McNemar: 0.1250 (A right and B wrong on 6 images; B right and A wrong on 1)" in body
    assert private_shown(text) == []

    close_challenge(url, "pp")
    app = AppTest.from_file(str(ROOT / "leaderboard" / "views" / "compare.py"), default_timeout=60).run()
    after = page_text(app)
    assert app.metric[0].value == "+72.00%" and "**B is better**" in app.markdown[0].value
    assert "on the private part (50 images)" in app.markdown[0].value
    assert private_shown(after) == []  # a difference, not the scores themselves: the board below shows those


def test_board_standings_panel_renders_intervals_without_private_scores_then_the_final_ranking(pair) -> None:
    url, _, _ = pair
    app = AppTest.from_file(str(ROOT / "leaderboard" / "app.py"), default_timeout=60).run()
    text = page_text(app)
    assert "Rank intervals" in [h.value for h in app.subheader]
    intervals = app.dataframe[1].value
    assert list(intervals["team"]) == ["alpha", "beta"] and list(intervals["top-5 err"]) == ["10.00%", "20.00%"]
    assert all("–" in cell for cell in intervals["rank interval"])
    assert private_shown(text) == [] and "Final standings" not in text
    assert "paired bootstrap resamples of the public part" in text  # the panel's caption is searched too

    close_challenge(url, "pp")
    app = AppTest.from_file(str(ROOT / "leaderboard" / "app.py"), default_timeout=60).run()
    text = page_text(app)
    assert "Final standings" in [h.value for h in app.subheader]
    final = app.dataframe[1].value
    assert list(final["team"]) == ["beta", "alpha"] and list(final["top-5 err"]) == ["14.00%", "86.00%"]
    assert list(final["public→private"]) == ["+1", "-1"]
    assert sorted(set(private_shown(text))) == ["14.00%", "86.00%"]  # the search finds them once they are public


def test_the_board_leaves_out_a_hidden_phase_entry_and_says_until_when(tmp_path, monkeypatch) -> None:
    from datetime import UTC, datetime

    from test_parts_phases import add

    url = create_schema(f"sqlite:///{tmp_path / 'hidden.db'}")
    create_challenge(url, "pp", "synthetic", OPTIONS, title="Parts", quota=5)
    labels, private = labels_and_parts(url, "pp")
    public = sorted(set(labels) - private)
    add(url, "pp", "development", datetime(2019, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC), quota=5)
    add(url, "pp", "final", datetime(2020, 1, 1, tzinfo=UTC), datetime(2099, 1, 1, tzinfo=UTC), quota=5,
        visibility="hidden")
    submit(url, team(url, "beta"), "pp", predictions(labels, set(public[:25])), "b.csv", label="beta-net",
           now=datetime(2019, 6, 1, tzinfo=UTC))
    submit(url, team(url, "alpha"), "pp", predictions(labels, set(public)), "a.csv", label="alpha-net")  # now: final
    with serving(url) as gate:
        monkeypatch.setenv("CONVBENCH_DB", url)
        monkeypatch.setenv(GATE_URL_ENV, gate)
        app = AppTest.from_file(str(ROOT / "leaderboard" / "app.py"), default_timeout=60).run()
        text = page_text(app)
    assert list(app.dataframe[0].value["entry"]) == ["beta-net"]
    assert "Entries of a hidden phase are scored but not shown until 2099-01-01 00:00:00 UTC, the end of hidden " \
           "phase 'final'." in [c.value for c in app.caption]
    assert "beta-net" in text and "alpha" not in text  # not in the table, the standings panel or the chart
