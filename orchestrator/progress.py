"""Live progress in the terminal: a job table (state, epoch, top-1/top-5, ETA), redrawn in place on a TTY."""
from __future__ import annotations

import time
from typing import Any, TextIO

from workers.jobs import JobSpec


def _pct(value: Any) -> str:
    return f"{100 * value:5.1f}" if isinstance(value, (int, float)) else "    -"


class ProgressTable:
    def __init__(self, jobs: list[JobSpec], out: TextIO):
        self.out, self.start = out, time.monotonic()
        self.rows: dict[str, dict[str, Any]] = {
            j.job_id: {"name": f"{j.arch}/{j.dataset}/s{j.seed}", "state": "queued", "epoch": 0,
                       # A recipe without epochs (the classical pipeline fits once) shows one step.
                       "epochs": j.recipe.get("epochs", 1), "t0": None} for j in jobs}
        self.tty = hasattr(out, "isatty") and out.isatty()
        self.drawn = 0
        self.last_line: dict[str, str] = {}

    def update(self, snapshot: dict[str, dict[str, Any]]) -> None:
        for job_id, metrics in snapshot.items():
            row = self.rows.get(job_id)
            if row is None or row["state"] in ("done", "failed"):
                continue
            if row["t0"] is None:
                row["t0"] = time.monotonic()
            row.update(state="running", epoch=metrics.get("epoch", row["epoch"]),
                       top1=metrics.get("val_top1_err"), top5=metrics.get("val_top5_err"))
        self.draw()

    def finish(self, job_id: str, state: str, result: dict[str, Any] | None = None, error: str | None = None) -> None:
        row = self.rows[job_id]
        row["state"] = state
        if result:
            row.update(top1=result.get("top1_err"), top5=result.get("top5_err"), epoch=result.get("epochs_done"),
                       map50=result.get("map50"))
        if error:
            row["error"] = error.splitlines()[-1][:120]

    def _eta(self, row: dict[str, Any]) -> str:
        if row["state"] != "running" or not row["epoch"] or not row["epochs"] or row["t0"] is None:
            return ""
        per_epoch = (time.monotonic() - row["t0"]) / row["epoch"]
        return f"{per_epoch * (row['epochs'] - row['epoch']):.0f}s"

    def line(self, row: dict[str, Any]) -> str:
        metric = f"mAP50 {_pct(row.get('map50'))}" if row.get("map50") is not None else \
            f"top1 {_pct(row.get('top1'))}  top5 {_pct(row.get('top5'))}"
        text = f"{row['name']:<42} {row['state']:<8} epoch {row['epoch'] or 0}/{row['epochs']:<3} {metric}  {self._eta(row)}"
        return text + (f"  {row['error']}" if row.get("error") else "")

    def draw(self) -> None:
        if self.tty:
            if self.drawn:
                self.out.write(f"\x1b[{self.drawn}F")
            lines = [self.line(r) for r in self.rows.values()]
            done = sum(r["state"] in ("done", "failed") for r in self.rows.values())
            lines.append(f"{done}/{len(self.rows)} finished, {time.monotonic() - self.start:.0f}s")
            self.out.write("".join(f"\x1b[2K{line}\n" for line in lines))
            self.drawn = len(lines)
        else:  # a log: one line per change of state or epoch
            for job_id, row in self.rows.items():
                key = f"{row['state']}:{row['epoch']}"
                if self.last_line.get(job_id) != key and row["state"] != "queued":
                    self.last_line[job_id] = key
                    self.out.write(self.line(row) + "\n")
        self.out.flush()

    def close(self) -> None:
        self.draw()
