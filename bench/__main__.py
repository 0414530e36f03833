"""`python -m bench`: run the performance benchmarks and print (and optionally save) their figures."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench import report
from db.engine import DatabaseError, check_url, safe_url
from bench.environment import describe
from bench.harness import Outcome, Settings, run_benchmarks
from bench.registry import BENCHMARKS, DESCRIPTIONS

EPILOG = """benchmarks:
{rows}

Every benchmark runs a warm-up, then N repetitions in which its baseline and its measured path
alternate in one process, so load from elsewhere on the machine largely cancels in the ratio.
The table shows medians; "ratio" is measured / baseline, the median of the per-repetition ratios,
with their range in brackets. Each row names its workload; the header names CPU, threads and versions.

examples:
  python -m bench --quick                        all benchmarks, small workloads, 2 repetitions
  python -m bench --only scoring,leaderboard     two benchmarks at full size
  python -m bench --json bench.json              also write every figure and sample as JSON
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    rows = "\n".join(f"  {name:<13} {text}" for name, text in DESCRIPTIONS.items())
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description="Run convbench's performance benchmarks and print their figures.",
                                     epilog=EPILOG.format(rows=rows),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smaller workloads and 2 repetitions: a check that everything runs, in minutes")
    parser.add_argument("--repeats", type=int, default=None, metavar="N",
                        help="measured repetitions per benchmark (default 5; 2 with --quick)")
    parser.add_argument("--warmup", type=int, default=1, metavar="N", help="unrecorded repetitions first (default 1)")
    parser.add_argument("--only", default="", metavar="NAME[,NAME]",
                        help=f"run only these benchmarks; known: {', '.join(BENCHMARKS)}")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="torch threads, and CPUs of the local Ray (default: all cores)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (for a README)")
    parser.add_argument("--pg-url", default=Settings.pg_url, metavar="URL",
                        help="PostgreSQL server for the leaderboard benchmark; a fresh database is created and "
                             "dropped there (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        check_url(args.pg_url)
    except DatabaseError as exc:
        parser.error(f"--pg-url: {exc}")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats: at least 1")
    if args.warmup < 0:
        parser.error("--warmup: must not be negative")
    if args.threads < 1:
        parser.error("--threads: at least 1")
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"--only: unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}")
    args.names = names or list(BENCHMARKS)
    return args


def public_argv(argv: list[str]) -> list[str]:
    """The command line as it may be saved: a URL's password (of --pg-url) shown as ***."""
    return [_public_arg(arg) for arg in argv]


def _public_arg(arg: str) -> str:
    name, sep, value = arg.partition("=")
    if sep and name.startswith("--") and "://" in value:  # --pg-url=postgresql://...
        return f"{name}={safe_url(value)}"
    return safe_url(arg) if "://" in arg else arg


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    environment = describe(args.threads)
    versions = ", ".join(f"{k} {v}" for k, v in environment["versions"].items())
    print(f"[bench] {environment['cpu']}, {environment['cores']} cores, {args.threads} threads, load "
          f"{environment['load_average_at_start']}; {versions}", flush=True)
    with tempfile.TemporaryDirectory(prefix="convbench-bench-") as workdir:
        settings = Settings(quick=args.quick, repeats=args.repeats or (2 if args.quick else 5), warmup=args.warmup,
                            threads=args.threads, workdir=Path(workdir), pg_url=args.pg_url)

        def save(so_far: Outcome) -> None:
            report.write_json(args.json, report.document(so_far, settings, environment, public_argv(argv)))

        outcome = run_benchmarks({name: BENCHMARKS[name] for name in args.names}, settings,
                                 after_each=save if args.json else None)
    print()
    print(report.markdown(outcome.figures) if args.markdown else report.table(outcome.figures))
    print()
    print(f"[bench] {report.summary(outcome)}")
    if args.json:
        print(f"[bench] wrote {args.json}")  # after every benchmark, so a run that dies keeps what it measured
    return 1 if outcome.errors else 0


if __name__ == "__main__":
    sys.exit(main())
