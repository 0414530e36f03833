"""The site under load: 50 sessions open the Leaderboard at once, with the shared read cache and without it.

Two `streamlit run` servers on 127.0.0.1 serve one populated SQLite database, one with the cache
(leaderboard.cache) and one with CONVBENCH_SITE_CACHE=off; each round opens SESSIONS websocket
sessions at once on one server, the way a browser tab does (Streamlit's own protocol: a BackMsg asking
for a script run, then ForwardMsgs until the run finishes), and times each from connecting to its
script_finished. The rounds alternate between the servers; the figures are each round's p50 and p95,
the uncached server's as the baseline. A session whose page raised fails the benchmark.

Websockets rather than browser tabs: fifty Chromium renderers on this 2-core machine would measure the
browser more than the site, and what the cache changes is the server's work per session.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bench.environment import workload
from bench.harness import Figure, Settings, Target
from bench.site_fixture import populate

ROOT = Path(__file__).resolve().parent.parent
SESSIONS = 50
P95_TARGET = Target("<=", 3.0, on="value")
SESSION_TIMEOUT_S = 120
STARTUP_S = 60
PACKAGES = ("streamlit", "pandas", "sqlalchemy", "websockets")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(url: str, cached: bool, log: Path) -> Iterator[str]:
    """`streamlit run leaderboard/app.py` on a free port; yields its base URL. XSRF is off: this client is
    no browser and holds no cookie, and the server listens on 127.0.0.1 only, for this benchmark."""
    port = free_port()
    env = {**os.environ, "CONVBENCH_DB": url, "CONVBENCH_SITE_CACHE": "on" if cached else "off",
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    command = [str(Path(sys.executable).with_name("streamlit")), "run", "leaderboard/app.py", "--server.headless",
               "true", "--server.port", str(port), "--server.address", "127.0.0.1",
               "--server.enableXsrfProtection", "false"]  # the rest from .streamlit/config.toml, as deployed
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as reply:
                    if reply.read() == b"ok":
                        break
            except OSError:
                time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


async def one_session(base: str) -> float:
    """Seconds from opening a session to the end of its first run of the default page (the Leaderboard)."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    start = time.perf_counter()
    async with connect(base.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=[Subprotocol("streamlit")],
                       max_size=None, open_timeout=SESSION_TIMEOUT_S) as ws:
        ask = BackMsg()
        ask.rerun_script.query_string = ""
        ask.rerun_script.page_script_hash = ""
        await ws.send(ask.SerializeToString())
        while True:
            message = ForwardMsg()
            message.ParseFromString(await ws.recv())
            kind = message.WhichOneof("type")
            if kind == "delta" and message.delta.new_element.WhichOneof("type") == "exception":
                raise RuntimeError(f"the page raised: {message.delta.new_element.exception.message}")
            if kind == "script_finished":
                if message.script_finished != ForwardMsg.FINISHED_SUCCESSFULLY:
                    raise RuntimeError(f"the run ended with {message.script_finished}")
                return time.perf_counter() - start


async def burst(base: str, sessions: int) -> list[float]:
    return list(await asyncio.wait_for(asyncio.gather(*(one_session(base) for _ in range(sessions))),
                                       SESSION_TIMEOUT_S * 2))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run(settings: Settings) -> list[Figure]:
    runs, submissions = settings.pick((10_000, 100_000), (2_000, 20_000))
    rounds = settings.pick(3, 2)
    url = f"sqlite:///{settings.workdir / 'site-load.db'}"
    Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    fixture = populate(url, runs, submissions)
    stats: dict[str, dict[str, list[float]]] = {mode: {"p50": [], "p95": []} for mode in ("cached", "uncached")}
    with contextlib.ExitStack() as stack:
        bases = {mode: stack.enter_context(server(url, mode == "cached", settings.workdir / f"site-load-{mode}.log"))
                 for mode in ("uncached", "cached")}
        for base in bases.values():  # warm-up: imports, the first script compile, a first cache fill
            asyncio.run(burst(base, 2))
        for r in range(rounds):
            for mode in (("uncached", "cached") if r % 2 == 0 else ("cached", "uncached")):
                seconds = asyncio.run(burst(bases[mode], SESSIONS))
                stats[mode]["p50"].append(statistics.median(seconds))
                stats[mode]["p95"].append(percentile(seconds, 0.95))
                print(f"[bench] site load: {mode} round {r + 1}: p50 {stats[mode]['p50'][-1]:.2f} s, "
                      f"p95 {stats[mode]['p95'][-1]:.2f} s", flush=True)
    work = workload(PACKAGES, db="sqlite", runs=fixture.runs, submissions=fixture.submissions, sessions=SESSIONS,
                    page="Leaderboard", transport="Streamlit websocket on 127.0.0.1", threads=settings.threads)
    found = []
    for quantile, target in (("p50", None), ("p95", P95_TARGET)):
        cached, uncached = stats["cached"][quantile], stats["uncached"][quantile]
        found.append(Figure("site_load", f"{SESSIONS} sessions open the board at once: {quantile}", work, "s", cached,
                            "without the read cache", uncached, [c / u for c, u in zip(cached, uncached) if u],
                            target=target))
    return found
