"""Leaderboard: the queries behind each page, and each page's render, on a populated database.

10,000 runs and 100,000 submissions (under --quick a fifth of that) go into a temp SQLite and
into a fresh PostgreSQL database (created and dropped here; skipped if the server is not
reachable). Each query function of leaderboard.queries that a page calls is timed on both, the
databases interleaved; then every page of leaderboard/app.py is rendered by Streamlit's AppTest.
Functions of leaderboard.queries that no entry below calls are listed in a note, so new ones
are not silently left out.
"""
from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.environment import workload
from bench.harness import Figure, Settings, Target, interleave, timed
from bench.site_fixture import SiteFixture, populate, postgres_database

QUERY_TARGET = Target("<=", 0.1, on="value")
RENDER_TARGET = Target("<=", 1.5, on="value")
APP = Path(__file__).resolve().parent.parent / "leaderboard" / "app.py"
PACKAGES = ("sqlalchemy", "pandas", "streamlit", "psycopg2-binary")

# page: call -> (function name in leaderboard.queries, how the page calls it)
Call = Callable[[Callable[..., Any], SiteFixture], Any]
PAGE_QUERIES: dict[str, tuple[str, Call]] = {
    "board: challenges_frame": ("challenges_frame", lambda f, x: f(x.url)),
    "board: leaderboard (best per team)": ("leaderboard", lambda f, x: f(x.url, x.main_slug, True, task=x.main_task)),
    "board: leaderboard (every submission, first page)": ("leaderboard",
                                                          lambda f, x: f(x.url, x.main_slug, False, task=x.main_task)),
    "board: leaderboard (every submission, page 100)": ("leaderboard", lambda f, x: f(
        x.url, x.main_slug, False, task=x.main_task, offset=99 * 200)),
    # leaderboard()'s own query, timed alone to tell the database's share from pandas'
    "board: submissions_frame (best per team)": ("submissions_frame", lambda f, x: f(x.url, x.main_slug, True)),
    "board: submissions_frame (every submission, first page)": ("submissions_frame",
                                                                lambda f, x: f(x.url, x.main_slug, False)),
    "board, no challenge: runs_frame (first page)": ("runs_frame", lambda f, x: f(x.url)),
    "architectures: architecture_facets": ("architecture_facets", lambda f, x: f(x.url)),
    "architectures: architectures_frame (first page)": ("architectures_frame", lambda f, x: f(x.url)),
    "architectures: architecture_points": ("architecture_points", lambda f, x: f(x.url)),
    "architectures: histories_frame (3 runs)": ("histories_frame", lambda f, x: f(x.url, x.curve_runs)),
    "detection: detection_frame": ("detection_frame", lambda f, x: f(x.url)),
    "run: run_choices": ("run_choices", lambda f, x: f(x.url)),
    "run: run_record": ("run_record", lambda f, x: f(x.url, x.run_id)),
    "run: run_submissions": ("run_submissions", lambda f, x: f(x.url, x.run_id)),
    "campaign: campaign_counts": ("campaign_counts", lambda f, x: f(x.url)),
    "campaign: campaign_frame (first page)": ("campaign_frame", lambda f, x: f(x.url)),
    "campaign: campaign_times": ("campaign_times", lambda f, x: f(x.url)),
    "campaign: campaign_frame (failed jobs, first page)": ("campaign_frame", lambda f, x: f(x.url, states=["failed"])),
    "submit: team_submissions": ("team_submissions", lambda f, x: f(x.url, x.team)),
}


def uncovered_queries() -> list[str]:
    """Public functions of leaderboard.queries that take a database URL and that no PAGE_QUERIES entry times."""
    from leaderboard import queries

    covered = {name for name, _ in PAGE_QUERIES.values()}
    return sorted(name for name, fn in vars(queries).items()
                  if inspect.isfunction(fn) and fn.__module__ == queries.__name__ and not name.startswith("_")
                  and "url" in inspect.signature(fn).parameters and name not in covered)


def query_paths(fixtures: dict[str, SiteFixture]) -> tuple[dict[str, Callable[[], float]], list[str]]:
    from leaderboard import queries

    paths, missing = {}, []
    for label, (name, call) in PAGE_QUERIES.items():
        fn = getattr(queries, name, None)
        if fn is None:
            missing.append(name)
            continue
        for db, fixture in fixtures.items():
            paths[f"{label}|{db}"] = lambda fn=fn, call=call, fixture=fixture: timed(lambda: call(fn, fixture))
    return paths, missing


PAGE_FOLDERS = ("views", "pages")  # where app.py's st.navigation has kept its page scripts


def pages() -> list[str]:
    """The app's page scripts, as AppTest.switch_page names them (relative to app.py)."""
    return sorted(f"{folder}/{p.name}" for folder in PAGE_FOLDERS for p in (APP.parent / folder).glob("*.py")
                  if not p.name.startswith("_"))


@contextlib.contextmanager
def database_env(url: str) -> Iterator[None]:
    old = os.environ.get("CONVBENCH_DB")
    os.environ["CONVBENCH_DB"] = url
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CONVBENCH_DB", None)
        else:
            os.environ["CONVBENCH_DB"] = old


def render(url: str, page: str | None) -> float:
    """Seconds for AppTest to run the page (None: the default page) with its queries; raises if the page raised."""
    from streamlit.testing.v1 import AppTest

    with database_env(url):
        app = AppTest.from_file(str(APP), default_timeout=120)
        if page is None:
            seconds = timed(app.run)
        else:
            app.run()
            app.switch_page(page)
            seconds = timed(app.run)
    if app.exception:
        raise RuntimeError(f"{page or 'default page'} raised: {app.exception[0].message}")
    return seconds


def render_paths(fixtures: dict[str, SiteFixture]) -> dict[str, Callable[[], float]]:
    paths = {}
    for page in [None, *pages()]:
        for db, fixture in fixtures.items():
            paths[f"render {page or 'default page (app.py)'}|{db}"] = lambda p=page, u=fixture.url: render(u, p)
    return paths


def figures(samples: dict[str, list[float]], fixtures: dict[str, SiteFixture], threads: int) -> list[Figure]:
    found = []
    for key, values in samples.items():
        label, db = key.split("|")
        x = fixtures[db]
        work = workload(PACKAGES, db=db, runs=x.runs, submissions=x.submissions, threads=threads)
        target = RENDER_TARGET if label.startswith("render") else QUERY_TARGET
        found.append(Figure("leaderboard", label, work, "s", values, target=target))
    return found


def run(settings: Settings) -> list[Figure]:
    runs, submissions = settings.pick((10_000, 100_000), (2_000, 20_000))
    notes: list[Figure] = []
    with contextlib.ExitStack() as stack:
        fixtures = {"sqlite": populate(f"sqlite:///{settings.workdir / 'site.db'}", runs, submissions)}
        try:
            pg_url = stack.enter_context(postgres_database(settings.pg_url))
        except Exception as exc:  # noqa: BLE001 - any failure to reach the server means: SQLite only
            print(f"[bench] leaderboard: PostgreSQL part skipped: {exc.__class__.__name__}: {exc}".splitlines()[0],
                  flush=True)
            notes.append(Figure("leaderboard", "PostgreSQL", workload(PACKAGES, db="postgresql"), "s", [],
                                note=f"skipped: {exc.__class__.__name__}"))
        else:
            fixtures["postgresql"] = populate(pg_url, runs, submissions)
        paths, missing = query_paths(fixtures)
        for name in missing:
            notes.append(Figure("leaderboard", f"{name} (not in leaderboard.queries)", {}, "s", [],
                                note="skipped: the function is gone"))
        samples = interleave(paths, settings.repeats, settings.warmup)
        samples.update(interleave(render_paths(fixtures), settings.repeats, settings.warmup))
        found = figures(samples, fixtures, settings.threads)
    extra = uncovered_queries()
    if extra:
        print(f"[bench] leaderboard: not timed (no page call registered in bench/site_queries.py): {', '.join(extra)}",
              flush=True)
        notes.append(Figure("leaderboard", "queries not timed", {}, "s", [], note=", ".join(extra)))
    return found + notes
