"""The README's Ray head command works on a machine where Redis (or anything else) holds 6379."""
from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import project_env

ROOT = Path(__file__).resolve().parents[1]
REDIS_PORT = 6379


def readme_ray_start() -> list[str]:
    """The README's `ray start --head` command, as a user pastes it from the project folder."""
    line = next(line for line in (ROOT / "README.md").read_text().splitlines() if "ray start --head" in line)
    words = shlex.split(line.replace("$PWD", str(ROOT)))
    return words[words.index("ray"):]


def flag(argv: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in argv if a.startswith(name + "="))


@contextmanager
def port_held(port: int) -> Iterator[None]:
    """`port` busy for the block: by whatever listens there already (this machine's Redis), else by us."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            yield
            return
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        yield


def stop_session(temp_dir: Path) -> None:
    """Stops only this head's processes: `ray stop` would stop every Ray on the machine, the tests' own too."""
    def ours() -> list[int]:
        pids = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if str(temp_dir).encode() in cmdline.read_bytes():
                    pids.append(int(cmdline.parent.name))
            except OSError:  # gone meanwhile
                pass
        return [pid for pid in pids if pid != os.getpid()]

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in ours():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while ours() and time.monotonic() < deadline:
            time.sleep(0.2)


def test_the_readme_head_port_is_not_redis_port():
    assert int(flag(readme_ray_start(), "--port")) != REDIS_PORT


@pytest.mark.slow
def test_the_readme_head_starts_while_6379_is_busy(tmp_path):
    argv = readme_ray_start()
    port = int(flag(argv, "--port"))
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} is taken on this machine: the README's " \
                                                           f"command cannot be tried here"
    env = project_env()
    subprocess.run(["ray", "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=120)
    # Short: the head's Unix sockets live under --temp-dir, and their paths are capped at 107 bytes.
    temp_dir = Path(f"/tmp/cbr{os.getpid()}")
    with port_held(REDIS_PORT):
        try:
            started = subprocess.run([*argv, f"--temp-dir={temp_dir}", "--num-cpus=1", "--disable-usage-stats"],
                                     env=env, capture_output=True, text=True, timeout=180, check=False)
            assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
            deadline = time.monotonic() + 30
            with socket.socket() as gcs:
                while gcs.connect_ex(("127.0.0.1", port)) != 0:
                    assert time.monotonic() < deadline, f"nothing listens on the README's GCS port {port}"
                    time.sleep(0.5)
        finally:
            stop_session(temp_dir)
            subprocess.run([sys.executable, "-c", f"import shutil; shutil.rmtree({str(temp_dir)!r}, True)"], check=False)


def test_tests_and_bench_never_name_redis_port():
    # A fixed 6379 anywhere the tests or the benchmarks start Ray would collide with a local Redis.
    offenders = [f"{p.relative_to(ROOT)}:{n}" for folder in ("tests", "bench") for p in (ROOT / folder).rglob("*.py")
                 if p.name != Path(__file__).name
                 for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\b6379\b", line)]
    assert not offenders, offenders
