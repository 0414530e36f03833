"""`python -m orchestrator`: plan and run benchmark suites on Ray (also `convbench run` and `convbench plan`)."""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys

# Building the parser imports argparse alone, so `--help` answers at once. The database layer is imported
# by the commands, and the orchestrator's modules (Ray, torch: seconds to import) after a password has been
# moved off the command line (see `reexec_without_password`).

RUN = "run every job of a suite that is not done yet, then print the leaderboard"
PLAN = ("print a suite's jobs, what each needs, what each costs (training compute, and training time from this "
        "machine's finished runs) and which are done; runs nothing")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", required=True, help="suite file (TOML), e.g. suites/smoke.toml")
    p.add_argument("--db", default=None, help="database URL (default: $CONVBENCH_DB or sqlite:///convbench.db)")
    p.add_argument("--storage", default=None,
                   help="folder for checkpoints, logs and predictions (default: the suite's `storage`); "
                        "on a multi-node cluster, a path every node shares")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (default: $RAY_ADDRESS; without either, start a local Ray)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray instance (default: all)")
    p.set_defaults(func=cmd_run)


def add_plan_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.set_defaults(func=cmd_plan)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m orchestrator", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    add_run_arguments(sub.add_parser("run", help=RUN, description=RUN,
                                     epilog="example: %(prog)s --suite suites/smoke.toml --db sqlite:///convbench.db"))
    add_plan_arguments(sub.add_parser("plan", help=PLAN, description=PLAN,
                                      epilog="example: %(prog)s --suite suites/cpu.toml"))
    return p


def spool_folder(storage: str | None, suite_storage: str) -> str:
    from pathlib import Path

    return str(Path(storage or suite_storage).expanduser().resolve() / "_pending_results")


def cmd_plan(args: argparse.Namespace) -> int:
    from db.engine import open_database

    # A plan only reads: a mistyped SQLite path is an error, not a new empty database with everything "to run".
    url = open_database(args.db)
    from orchestrator.campaign import make_plan, with_storage
    from orchestrator.estimate import Throughput, estimate, format_flops, format_seconds, legend, totals_line
    from orchestrator.scheduler import launcher_for
    from orchestrator.store import Store
    from orchestrator.suite import load_suite

    suite = load_suite(args.suite)
    store = Store(url, spool_folder(args.storage, suite.storage))
    store.prepare()
    plan = make_plan(store, with_storage(suite, args.storage))
    throughput = Throughput.from_database(url, {job.arch for job in plan.jobs})
    print(f"{'job':<22} {'task':<15} {'arch':<14} {'dataset':<12} seed  input px  resources{'':<18} "
          f"{'compute':<11} {'est. time':<10} state")
    costs = {}  # job id -> Estimate
    for job in plan.jobs:
        r = job.resources
        state = "done" if job.job_id in plan.done else "done (on disk)" if job.job_id in plan.recovered else "to run"
        res = f"{r.workers}x({r.cpus:g} CPU, {r.gpus:g} GPU) {launcher_for(job)}"
        costs[job.job_id] = cost = estimate(job, throughput)
        print(f"{job.job_id:<22} {job.task:<15} {job.arch:<14} {job.dataset:<12} {job.seed:<5} {job.input_size:<9} "
              f"{res:<27} {format_flops(cost.flops):<11} {format_seconds(cost.seconds):<10} {state}")
    print(legend(plan.jobs))
    print(totals_line(plan.jobs, plan.to_run, costs))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from db.engine import open_database
    from orchestrator.campaign import print_board, run_campaign
    from orchestrator.store import Store
    from orchestrator.suite import load_suite

    suite = load_suite(args.suite)
    url = open_database(args.db, create=True)
    store = Store(url, spool_folder(args.storage, suite.storage))
    states = run_campaign(suite, store, args.storage, args.address, args.num_cpus)
    print_board(store, suite.name)  # one line, not a traceback, when the database is away
    failed = sorted(k for k, v in states.items() if v == "failed")
    print(f"\n{len(states) - len(failed)} done, {len(failed)} failed. {leaderboard_hint(url)}")
    return 1 if failed else 0


def leaderboard_hint(url: str) -> str:
    """How to open the site on this database: a command that runs as printed from the working directory.

    A URL with a password is never printed (this lands in job logs): the user sets $CONVBENCH_DB instead.
    """
    from db.engine import URL_ENV, has_password, program, safe_url, shown_path

    app = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "leaderboard", "app.py")
    command = f"{program('streamlit')} run {shown_path(app)}"
    if not has_password(url):
        return f"Open the leaderboard with:\n  {URL_ENV}={shlex.quote(url)} {command}"
    return (f"Open the leaderboard with ${URL_ENV} set to the database's URL ({safe_url(url)}; "
            f"its password is not printed):\n  {command}")


def password_off_the_command_line(argv: list[str], url: str | None) -> list[str] | None:
    """`argv` without its --db when that URL holds a password; None when there is nothing to hide."""
    from db.engine import has_password

    if not url or not has_password(url):
        return None
    kept = []
    for arg in argv:
        if arg == url and kept and kept[-1].startswith("--d"):  # `--db URL` (or an abbreviation of --db)
            kept.pop()
        elif not (arg.startswith("--d") and arg.endswith(f"={url}")):  # `--db=URL`
            kept.append(arg)
    return kept


def reexec_without_password(argv: list[str], url: str | None) -> None:
    """Runs this command again with a --db password moved into $CONVBENCH_DB; returns if there is none.

    Ray records a driver's command line (/proc/PID/cmdline) as its job's entrypoint, shown on the
    dashboard, and `ps` shows it to every user: a password in --db would be on both for the whole run.
    """
    from db.engine import URL_ENV

    kept = password_off_the_command_line(argv, url)
    if kept is None:
        return
    # What ran before `argv`, with this interpreter's path so it finds the same venv: `-m orchestrator`,
    # `-m convbench`, or the `convbench` script's path (`argv` then starts with `run`).
    launcher = [sys.executable, *sys.orig_argv[1:len(sys.orig_argv) - len(argv)]]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [*launcher, *kept], {**os.environ, URL_ENV: url})


def run_command(args: argparse.Namespace) -> int:
    """Runs `args.func` (cmd_run, cmd_plan) with one-line errors; first, when `args.argv` is this process's own
    command line (`args.from_process`), re-executes it if its --db holds a password."""
    from db.engine import exit_status
    from workers.typed import ConfigError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "from_process", False):  # a caller's list is not on this process's command line
        reexec_without_password(args.argv, args.db)
    return exit_status(lambda: args.func(args), args.db, usage_errors=(ConfigError,))


def main(argv: list[str] | None = None) -> int:
    from_process = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.argv, args.from_process = argv, from_process
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
