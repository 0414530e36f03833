"""Every page in a real browser, as a first-time visitor sees it on a desktop and on a phone: screenshots at
1400 px and 390 px wide, and what a reader should never see (a "None" or "nan" cell, a float with more than
the site's fixed decimals, the developer toolbar), what they should (the About text), and every chart drawn.

One `streamlit run` serves every page (test_site_browser's fixture). The screenshots go to
$CONVBENCH_SCREENSHOTS when set (`CONVBENCH_SCREENSHOTS=docs/screenshots` refreshes the README's two), else
to the test's temporary folder.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright
from test_site_browser import CHROMIUM, CHROMIUM_ARGS, site  # noqa: F401 - `site` is the fixture used below

from leaderboard.formatting import DECIMALS

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = {"desktop": 1400, "phone": 390}
VIEW_HEIGHT = 900
# page address -> (its title, the charts it draws on the test database)
PAGES = {
    "": ("Leaderboard", 1), "about": ("About convbench", 1), "architectures": ("Architectures", 4),
    "detection": ("Detection", 3), "run?job=job-vgg11": ("Run detail", 3), "campaign": ("Campaign", 2),
    "submit": ("Submit predictions", 0),
    "run?job=job-resnet18": ("Run detail", 4),  # where its errors are: per class, the heatmap, time to accuracy
}
SHOT_NAMES = {"run?job=job-resnet18": "run-errors"}  # a second view of a page: a screenshot of its own
if (ROOT / "leaderboard" / "views" / "data.py").is_file():  # another page of the site, when it is there
    PAGES["data"] = ("", 0)
MISSING = {"none", "nan", "nat", "<na>", "null"}
TOO_PRECISE = re.compile(rf"\d\.\d{{{DECIMALS + 1},}}(?!\d*[a-f])")  # 0.3409 or 0.22748775: not 12.34% or 0.9


def finished(page: Page, charts: int) -> None:
    """Until the script has run and the elements it wrote are on the page: its last chart, when it draws
    any (a fresh session can read "notRunning" before its first run has begun)."""
    if charts:
        page.locator('[data-testid="stVegaLiteChart"]').nth(charts - 1).wait_for(timeout=60_000)
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=60_000)


def whole_page(page: Page, width: int, path: Path) -> None:
    """A screenshot of the whole page: Streamlit scrolls its main block, not the document, so the window is
    made as tall as the content first (and back afterwards)."""
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": width, "height": min(max(VIEW_HEIGHT, int(height) + 40), 12_000)})
    page.wait_for_timeout(400)  # the layout follows the new height
    page.screenshot(path=path, full_page=True)
    page.set_viewport_size({"width": width, "height": VIEW_HEIGHT})


def cells(page: Page) -> list[str]:
    """Every table cell's text: st.dataframe's accessible table (the grid itself is a canvas) and st.table."""
    texts = []
    for grid in page.locator('[data-testid="stDataFrame"]').all():
        grid.locator('[role="gridcell"]').first.wait_for(state="attached", timeout=30_000)
        texts += grid.locator("table tbody td").all_text_contents()
    texts += page.locator('[data-testid="stTable"] td').all_text_contents()
    return [t.strip() for t in texts]


def charts_drawn(page: Page) -> int:
    charts = page.locator('[data-testid="stVegaLiteChart"]').all()
    for chart in charts:  # vega-embed draws a canvas (or an svg) inside each
        chart.locator("canvas, svg").first.wait_for(state="attached", timeout=30_000)
    return len(charts)


def test_every_page_at_desktop_and_phone_width(site, tmp_path) -> None:  # noqa: F811 - the fixture
    base = site[0]
    assert CHROMIUM.is_file(), "no /usr/bin/chromium: install Debian's chromium package (.ci/run does)"
    folder = Path(os.environ.get("CONVBENCH_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for device, width in WIDTHS.items():
                page = browser.new_page(viewport={"width": width, "height": VIEW_HEIGHT})
                page.set_default_timeout(30_000)
                for address, (title, charts) in PAGES.items():
                    page.goto(f"{base}/{address}")
                    if title:
                        page.get_by_role("heading", name=title, exact=True).first.wait_for()
                    finished(page, charts)
                    name = SHOT_NAMES.get(address) or address.split("?")[0] or "leaderboard"
                    whole_page(page, width, folder / f"{name}-{device}.png")
                    shown = cells(page)
                    problems += [f"{name} ({device}): cell {c!r}" for c in shown
                                 if c.lower() in MISSING or TOO_PRECISE.search(c)]
                    drawn = charts_drawn(page)
                    if drawn < charts:
                        problems.append(f"{name} ({device}): {drawn} charts drawn, expected {charts}")
                    # The developer toolbar's Deploy button is for the app's author, never a visitor.
                    if page.locator('[data-testid="stAppDeployButton"]').count() or \
                            page.get_by_role("button", name="Deploy").count():
                        problems.append(f"{name} ({device}): the Deploy button is shown")
                    if address == "about":
                        text = page.locator('[data-testid="stMain"]').inner_text()
                        for expected in ("ILSVRC", "Held labels", "Quota", "top-5 err", "mAP@0.5", "25.80%",
                                         "15.30%", "7.30%", "6.70%", "3.57%", "Krizhevsky", "He, X. Zhang",
                                         "convbench submit --server", "ray job submit"):
                            if expected not in text:
                                problems.append(f"about ({device}): {expected!r} missing")
                    if address == "" and device == "phone":
                        # On a phone the score stays in view: the entry and its score are pinned at the left.
                        header = page.locator('[data-testid="stDataFrame"] table thead').first.inner_text()
                        if "top-5 err" not in header:
                            problems.append(f"board (phone): no score column in {header!r}")
                page.close()
        finally:
            browser.close()
    assert problems == []
    assert len(list(folder.glob("*.png"))) == 2 * len(PAGES)


def test_the_load_benchmark_drives_real_sessions(site) -> None:  # noqa: F811 - the fixture
    """bench.site_load's client, a few sessions at once: each opens the board over Streamlit's websocket and
    ends with its script run finished successfully (a page that raised would fail it)."""
    import asyncio

    from bench.site_load import burst, percentile

    seconds = asyncio.run(burst(site[0], 3))
    assert len(seconds) == 3 and all(0 < s < 60 for s in seconds)
    assert percentile(seconds, 0.5) == sorted(seconds)[1] and percentile(seconds, 0.95) == max(seconds)
