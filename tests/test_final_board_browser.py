"""The board after the close in Chromium (issue #15): the private ranking of the final selections with rank
intervals and each team's public->private shift; before the close, no private score on the page."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from playwright.sync_api import sync_playwright
from test_parts_phases import labels_and_parts, predictions, team
from test_site_browser import CHROMIUM, CHROMIUM_ARGS, serve_site

from db.engine import create_schema
from leaderboard.challenges import close_challenge, create_challenge
from leaderboard.quota import submit

pytestmark = pytest.mark.browser
OPTIONS = {"num_classes": 4, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 10}
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def test_private_ranking_intervals_and_shift_after_the_close(tmp_path) -> None:
    url = create_schema(f"sqlite:///{tmp_path / 'final.db'}")
    create_challenge(url, "pp", "synthetic", OPTIONS, title="Parts", quota=5)
    labels, private = labels_and_parts(url, "pp")
    public, hidden = sorted(set(labels) - private), sorted(private)
    # Public errors 0%, 25%, 50%; private 85%, 40%, 0%: the public order reverses at the close.
    for name, right in (("alpha", set(public) | set(hidden[:3])), ("gamma", set(public[:15]) | set(hidden[:12])),
                        ("beta", set(public[:10]) | set(hidden))):
        submit(url, team(url, name), "pp", predictions(labels, right), f"{name}.csv", label=f"{name}-net", now=T0)
    with serve_site(url, tmp_path) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.set_default_timeout(60_000)
            page.goto(base)
            page.get_by_role("heading", name="Rank intervals").wait_for()
            text = page.locator("body").inner_text()
            assert "85.00%" not in text and "40.00%" not in text  # the private errors: not yet
            assert "Final standings" not in text

            close_challenge(url, "pp")
            page.reload()
            page.get_by_role("heading", name="Final standings").wait_for()
            table = page.locator('[data-testid="stDataFrame"] table').nth(1)
            table.locator('[role="gridcell"]').first.wait_for(state="attached")
            rows = [r.locator("td").all_text_contents() for r in table.locator("tbody tr").all()]
        finally:
            browser.close()
    header = ["rank", "rank interval", "entry", "team", "top-5 err", "public→private"]
    assert len(rows) == 3, rows
    by_team = {row[3]: dict(zip(header, row)) for row in rows}
    assert [row[3] for row in rows] == ["beta", "gamma", "alpha"]
    assert by_team["beta"]["public→private"] == "+2" and by_team["alpha"]["public→private"] == "-2"
    assert by_team["gamma"]["public→private"] == "="
    assert by_team["alpha"]["top-5 err"] == "85.00%"
    assert all("–" in row[1] for row in rows)  # every entry's rank interval
