"""Lint and types, run by `make test` like every other check.

ruff must be clean on the whole tree. mypy runs on the packages against a baseline of known errors
per file and code (`mypy-baseline.json`) that only shrinks: a new error fails, and so does a fixed
one until the baseline is written again (`python tests/test_lint.py --update`), so it never hides
room for a new error.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "mypy-baseline.json"
PACKAGES = ("db", "workers", "leaderboard", "orchestrator", "bench", "convbench")
ERROR = re.compile(r"^(?P<file>[^:]+):\d+: error: .*\[(?P<code>[a-z0-9-]+)\]$")


def tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def mypy_errors() -> Counter[str]:
    """'file [code]' -> how many errors mypy reports there."""
    out = subprocess.run([tool("mypy"), *PACKAGES], cwd=ROOT, capture_output=True, text=True, timeout=900,
                         check=False)
    if out.returncode not in (0, 1):  # 2: mypy itself failed (a config or syntax error)
        raise RuntimeError(out.stdout[-3000:] + out.stderr[-3000:])
    found = (ERROR.match(line) for line in out.stdout.splitlines())
    return Counter(f"{m['file']} [{m['code']}]" for m in found if m)


def test_ruff_is_clean():
    out = subprocess.run([tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]


def test_mypy_errors_only_shrink():
    baseline = Counter(json.loads(BASELINE.read_text()))
    now = mypy_errors()
    new = {key: now[key] - baseline[key] for key in now if now[key] > baseline[key]}
    assert not new, f"new mypy errors (file [code]: how many more than the baseline): {new}"
    fixed = {key: baseline[key] - now[key] for key in baseline if now[key] < baseline[key]}
    assert not fixed, f"fewer mypy errors than the baseline: shrink it with `python tests/test_lint.py --update` ({fixed})"


if __name__ == "__main__" and sys.argv[1:] == ["--update"]:
    BASELINE.write_text(json.dumps(dict(sorted(mypy_errors().items())), indent=1) + "\n")
    print(f"wrote {BASELINE.relative_to(ROOT)}")
