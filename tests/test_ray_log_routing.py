"""Issue #18: Ray's own lines stay out of the live table; they go to <storage>/_driver/ray.log.

What printed before, on the driver's stderr and stdout, between the table's lines (seen with Ray 2.60):
  2026-11-30 18:48:01,894<TAB>WARNING authentication_token_setup.py:85 -- Token authentication is enabled ...
  2026-11-30 18:48:06,227<TAB>INFO worker.py:2038 -- Started a local Ray instance.
  2026-11-30 18:46:41,809<TAB>INFO worker.py:1841 -- Connecting to existing Ray cluster at address: ...
  (raylet) A worker died or was killed while executing a task by an unexpected system error. ...
  (raylet) Task run_as_task failed. There are 2 retries remaining, so the task will be retried. ...
The driver says once where the file is; job failures stay in the table and the summary.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import runs_in
from test_orchestrator import ROOT, wait_for, write_suite

TINY = ROOT / "tests" / "suites" / "tiny.toml"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
RAY_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\s+(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")
RAY_WORDS = ("(raylet)", "auth token", "Token authentication", "worker.py:", "Ray cluster", "local Ray instance")


def ray_lines(text: str) -> list[str]:
    """Lines of Ray's own making: its log format, its raylet notices, its auth warnings."""
    found = []
    for line in ANSI.sub("", text).splitlines():
        if RAY_LINE.match(line) or any(word.lower() in line.lower() for word in RAY_WORDS):
            found.append(line)
    return found


def check_output(out: str, err: str, storage: Path) -> str:
    """Asserts nothing of Ray's reached the terminal and the driver named the file once; returns the file's text."""
    assert not ray_lines(out), ray_lines(out)
    assert not ray_lines(err), ray_lines(err)
    ray_log = storage.resolve() / "_driver" / "ray.log"
    assert out.count(f"Ray's own messages go to {ray_log}") == 1, out
    return ray_log.read_text()


@pytest.mark.slow
def test_joining_a_token_auth_cluster_prints_nothing_of_rays(ray_head, tmp_path: Path) -> None:
    url, storage = f"sqlite:///{tmp_path}/c.db", tmp_path / "runs"
    assert ray_head.env["RAY_AUTH_MODE"] == "token"
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", "--suite", str(TINY), "--db", url, "--storage", str(storage),
         "--address", ray_head.address], check=False, cwd=ROOT, env=ray_head.env, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = check_output(proc.stdout, proc.stderr, storage)
    assert "Connecting to existing Ray cluster" in text and "Connected to Ray cluster" in text
    assert "2 done, 0 failed" in proc.stdout and "top-5 err" in proc.stdout  # the driver's own output is all there
    assert {r.state for r in runs_in(url)} == {"done"}


@pytest.mark.slow
def test_a_local_ray_with_a_killed_worker_prints_nothing_of_rays(tmp_path: Path) -> None:
    """A local Ray with RAY_AUTH_MODE unset warns about token auth; a killed worker brings raylet notices."""
    url, storage = f"sqlite:///{tmp_path}/c.db", tmp_path / "runs"
    suite = write_suite(tmp_path, "killed", ["resnet18"], epochs=3, per_class=40)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env.update(PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "--suite", str(suite), "--db", url, "--storage", str(storage),
         "--num-cpus", "2"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = wait_for(lambda: next(storage.glob("*/checkpoints/epoch_0001.pt"), None) or proc.poll() is not None,
                         timeout=400)
        assert first is not True, proc.communicate()
        log = (first.parent.parent / "log.txt").read_text()
        os.kill(int(re.findall(r"attempt started: pid (\d+)", log)[-1]), signal.SIGKILL)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    text = check_output(out, err, storage)
    assert "Token authentication is enabled" in text and "Started a local Ray instance" in text
    assert "(raylet) A worker died or was killed" in text, text
    (run,) = runs_in(url)
    assert run.state == "done" and run.attempts == 2
