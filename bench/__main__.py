"""`python -m bench`: run the performance benchmarks and print (and optionally save) their figures."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

# The parser needs the registry's names and descriptions only (no torch); a run imports the rest.
from bench.harness import Settings
from bench.registry import BENCHMARKS, DESCRIPTIONS

EPILOG = """benchmarks:
{rows}

Every benchmark runs a warm-up, then N repetitions in which its baseline and its measured path
alternate in one process, so load from elsewhere on the machine largely cancels in the ratio.
The table shows medians; "ratio" is measured / baseline, the median of the per-repetition ratios,
with their range in brackets. Each row names its workload; the header names CPU, threads and versions.
"""
EXAMPLES = """
examples:
  python -m bench --quick                        all benchmarks, small workloads, 2 repetitions
  python -m bench --only scoring,leaderboard     two benchmarks at full size
  python -m bench --json bench.json              also write every figure and sample as JSON
"""


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError("must not be negative" if minimum == 0 else f"at least {minimum}")
        return value
    return parse


def _pg_url(text: str) -> str:
    from db.engine import DatabaseError, check_url

    try:
        check_url(text)
    except DatabaseError as exc:  # its message shows the URL without its password; argparse's own would not
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmarks' options, and their list before `parser`'s epilog (`python -m bench`, `convbench bench`)."""
    rows = "\n".join(f"  {name:<13} {text}" for name, text in DESCRIPTIONS.items())
    examples = f"\n{parser.epilog}" if parser.epilog else EXAMPLES  # convbench gives its own
    parser.epilog = EPILOG.format(rows=rows) + examples
    parser.add_argument("--quick", action="store_true",
                        help="smaller workloads and 2 repetitions: a check that everything runs, in minutes")
    parser.add_argument("--repeats", type=_at_least(1), default=None, metavar="N",
                        help="measured repetitions per benchmark (default 5; 2 with --quick)")
    parser.add_argument("--warmup", type=_at_least(0), default=1, metavar="N",
                        help="unrecorded repetitions first (default 1)")
    parser.add_argument("--only", type=_names, default=[], metavar="NAME[,NAME]",
                        help=f"run only these benchmarks; known: {', '.join(BENCHMARKS)}")
    parser.add_argument("--threads", type=_at_least(1), default=os.cpu_count() or 1, metavar="N",
                        help="torch threads, and CPUs of the local Ray (default: all cores)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (for a README)")
    parser.add_argument("--pg-url", type=_pg_url, default=Settings.pg_url, metavar="URL",
                        help="PostgreSQL server for the leaderboard benchmark; a fresh database is created and "
                             "dropped there (default %(default)s)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description="Run convbench's performance benchmarks and print their figures.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def public_argv(argv: list[str]) -> list[str]:
    """The command line as it may be saved: a URL's password (of --pg-url) shown as ***."""
    return [_public_arg(arg) for arg in argv]


def _public_arg(arg: str) -> str:
    from db.engine import safe_url

    name, sep, value = arg.partition("=")
    if sep and name.startswith("--") and "://" in value:  # --pg-url=postgresql://...
        return f"{name}={safe_url(value)}"
    return safe_url(arg) if "://" in arg else arg


def run(args: argparse.Namespace) -> int:
    """Runs the benchmarks `args` name; `args.argv`, the command line, is saved with the figures."""
    import torch

    from bench import report
    from bench.environment import describe
    from bench.harness import Outcome, run_benchmarks

    names = args.only or list(BENCHMARKS)
    torch.set_num_threads(args.threads)
    environment = describe(args.threads)
    versions = ", ".join(f"{k} {v}" for k, v in environment["versions"].items())
    print(f"[bench] {environment['cpu']}, {environment['cores']} cores, {args.threads} threads, load "
          f"{environment['load_average_at_start']}; {versions}", flush=True)
    with tempfile.TemporaryDirectory(prefix="convbench-bench-") as workdir:
        settings = Settings(quick=args.quick, repeats=args.repeats or (2 if args.quick else 5), warmup=args.warmup,
                            threads=args.threads, workdir=Path(workdir), pg_url=args.pg_url)

        def save(so_far: Outcome) -> None:
            report.write_json(args.json, report.document(so_far, settings, environment, public_argv(args.argv)))

        outcome = run_benchmarks({name: BENCHMARKS[name] for name in names}, settings,
                                 after_each=save if args.json else None)
    print()
    print(report.markdown(outcome.figures) if args.markdown else report.table(outcome.figures))
    print()
    print(f"[bench] {report.summary(outcome)}")
    if args.json:
        print(f"[bench] wrote {args.json}")  # after every benchmark, so a run that dies keeps what it measured
    return 1 if outcome.errors else 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
