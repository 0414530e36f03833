"""`python -m orchestrator`: plan and run benchmark suites on Ray."""
from __future__ import annotations

import argparse
import logging
import sys

from db.engine import database_url
from orchestrator.campaign import make_plan, run_campaign, with_storage
from orchestrator.scheduler import launcher_for
from orchestrator.store import Store
from orchestrator.suite import load_suite
from workers.typed import ConfigError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", required=True, help="suite file (TOML), e.g. suites/smoke.toml")
    p.add_argument("--db", default=None, help="database URL (default: $CONVBENCH_DB or sqlite:///convbench.db)")
    p.add_argument("--storage", default=None,
                   help="folder for checkpoints, logs and predictions (default: the suite's `storage`); "
                        "on a multi-node cluster, a path every node shares")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m orchestrator", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run every job of a suite that is not done yet, then print the leaderboard")
    _common(run)
    run.add_argument("--address", default=None,
                     help="Ray cluster to join (default: $RAY_ADDRESS; without either, start a local Ray)")
    run.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray instance (default: all)")
    plan = sub.add_parser("plan", help="print a suite's jobs, what each needs and which are done; runs nothing")
    _common(plan)
    return p


def spool_folder(storage: str | None, suite_storage: str) -> str:
    from pathlib import Path

    return str(Path(storage or suite_storage).expanduser().resolve() / "_pending_results")


def cmd_plan(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    store = Store(database_url(args.db), spool_folder(args.storage, suite.storage))
    store.prepare()
    plan = make_plan(store, with_storage(suite, args.storage))
    print(f"{'job':<22} {'task':<15} {'arch':<14} {'dataset':<12} seed  size  resources{'':<18} state")
    for job in plan.jobs:
        r = job.resources
        state = "done" if job.job_id in plan.done else "done (on disk)" if job.job_id in plan.recovered else "to run"
        res = f"{r.workers}x({r.cpus:g} CPU, {r.gpus:g} GPU) {launcher_for(job)}"
        print(f"{job.job_id:<22} {job.task:<15} {job.arch:<14} {job.dataset:<12} {job.seed:<5} {job.input_size:<5} "
              f"{res:<27} {state}")
    print(f"{len(plan.to_run)} of {len(plan.jobs)} jobs left to run")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from leaderboard.queries import format_runs, runs_frame

    suite = load_suite(args.suite)
    url = database_url(args.db)
    store = Store(url, spool_folder(args.storage, suite.storage))
    states = run_campaign(suite, store, args.storage, args.address, args.num_cpus)
    print()
    print(format_runs(runs_frame(url, suite=suite.name, limit=None)))
    failed = sorted(k for k, v in states.items() if v == "failed")
    print(f"\n{len(states) - len(failed)} done, {len(failed)} failed. Open the leaderboard with:\n"
          f"  CONVBENCH_DB={url} streamlit run leaderboard/app.py")
    return 1 if failed else 0


COMMANDS = {"run": cmd_run, "plan": cmd_plan}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
