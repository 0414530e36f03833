"""The site in a real browser: `streamlit run` as a subprocess, driven by headless Chromium through Playwright.

Uses the system's Chromium (Debian's package; .ci/run installs it): Playwright downloads nothing.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import free_port
from gate_server import serving
from playwright.sync_api import Page, sync_playwright
from test_site import EXPECTED_BOARD, held_labels, populate, predictions

from db.engine import session_scope
from db.schema import Submission, Team
from leaderboard.gate_client import GATE_URL_ENV

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
STARTUP_S = 60


def wait_healthy(base: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"streamlit exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as reply:
                if reply.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"streamlit did not answer within {STARTUP_S}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def site(tmp_path) -> Iterator[tuple[str, str, dict[str, str]]]:
    """A populated database, and the site with its submission gate serving it; yields (base URL, db URL, tokens)."""
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    tokens = populate(url, tmp_path)
    with serve_site(url, tmp_path) as base:
        yield base, url, tokens


@contextmanager
def serve_site(url: str, tmp_path: Path) -> Iterator[str]:
    """The submission gate and `streamlit run` on database `url`, on free local ports; yields the site's base URL."""
    with serving(url) as gate:
        port = free_port()
        log = tmp_path / "streamlit.log"
        env = {**os.environ, "CONVBENCH_DB": url, GATE_URL_ENV: gate, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
        command = [str(Path(sys.executable).with_name("streamlit")), "run", "leaderboard/app.py", "--server.headless",
                   "true", "--server.port", str(port), "--server.address", "127.0.0.1"]
        with open(log, "wb") as out:
            server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base, server, log)
            yield base
        finally:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(15)


def board_rows(page: Page) -> list[list[str]]:
    """The leaderboard table's rows as text, read from the data grid's accessible table (the cells are a canvas)."""
    table = page.locator('[data-testid="stDataFrame"] table').first
    table.locator('[role="gridcell"]').first.wait_for(state="attached", timeout=30_000)
    return [row.locator("td").all_text_contents() for row in table.locator("tbody tr").all()]


def test_read_the_board_then_submit_in_chromium(site, tmp_path) -> None:
    base, url, tokens = site
    assert CHROMIUM.is_file(), "no /usr/bin/chromium: install Debian's chromium package (.ci/run does)"
    upload = tmp_path / "preds.csv"
    upload.write_bytes(predictions(held_labels(url), 0.6, 0.9, seed=42))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(30_000)
            # A deep link is this fresh server's first request: it must still get the whole site around it.
            page.goto(f"{base}/run?job=job-vgg11")
            page.get_by_role("heading", name="vgg11 on synthetic").wait_for()
            page.get_by_text("node-vgg11", exact=True).wait_for()

            page.get_by_role("link", name="Leaderboard").click()
            page.get_by_role("heading", name="Leaderboard").wait_for()
            rows = board_rows(page)
            assert [row[1] for row in rows] == EXPECTED_BOARD
            assert [row[2] for row in rows] == ["convbench baselines", "alpha", "convbench baselines",
                                                "convbench baselines", "beta"]

            page.get_by_role("link", name="Submit").click()
            page.get_by_role("heading", name="Submit predictions").wait_for()
            page.get_by_label("Team token").fill(tokens["delta"])
            page.get_by_label("Entry name (optional, e.g. the model)").fill("browser entry")
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(upload))
            page.get_by_text("preds.csv").wait_for()  # the upload finished before the form is sent
            page.get_by_role("button", name="Submit", exact=True).click()
            page.get_by_text("Confirm the upload").wait_for()  # what it spends, before anything is sent
            page.get_by_text("left now").wait_for()
            page.get_by_role("button", name="Confirm and send").click()
            message = page.get_by_text(re.compile(r"^Scored submission #\d+ of team delta"))
            message.wait_for(timeout=60_000)
            shown = message.inner_text()

            with session_scope(url) as session:
                row = session.scalar(sa.select(Submission).join(Team).where(Team.name == "delta"))
            assert row is not None and row.label == "browser entry" and row.n_rows == 200
            assert f"Scored submission #{row.id} of team delta to syn: top-5 error {100 * row.primary_score:.2f}%" in shown
            page.get_by_text("1 of 2 submissions left in the rolling 7-day window.", exact=True).wait_for()

            page.get_by_role("link", name="Leaderboard").click()
            page.get_by_role("heading", name="Leaderboard").wait_for()
            page.get_by_text(re.compile(r"^Every submission")).wait_for()
            # The new entry under the name it was given, beside its team.
            assert ["browser entry", "delta"] in [row[1:3] for row in board_rows(page)]
        finally:
            browser.close()
