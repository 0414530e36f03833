"""`python -m gate` (and `convbench gate`): serve the submission gate with uvicorn.

The parser imports argparse alone, so `convbench gate --help` is instant; FastAPI, uvicorn and the scorer come
with running it.
"""
from __future__ import annotations

import argparse
import os
import sys

DEFAULT_PORT = 8502


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, metavar="URL",
                   help="database URL (default: $CONVBENCH_DB, else sqlite:///convbench.db); the role that reads "
                        "held labels. A URL with a password goes in $CONVBENCH_DB, never here: ps shows it")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s; 0.0.0.0: all)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default %(default)s)")
    p.add_argument("--forwarded-allow-ips", default=None, metavar="ADDRS",
                   help="proxies whose X-Forwarded-For names the client (comma-separated addresses or networks; "
                        "default: $FORWARDED_ALLOW_IPS, else 127.0.0.1). The client address keys the throttles")
    p.add_argument("--rate", type=float, default=2.0, help="requests a second per client address (default %(default)s)")
    p.add_argument("--burst", type=int, default=40, help="requests at once per client address (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from db.engine import exit_status, has_password, open_database, safe_url

    if args.db and has_password(args.db):
        print("error: --db holds a password, which `ps` would show for as long as the gate runs; "
              "put the URL in $CONVBENCH_DB instead", file=sys.stderr)
        return 2

    def command() -> int:
        import uvicorn

        from gate.app import create_app

        url = open_database(args.db)  # migrating is the operator's job (`python -m db upgrade`): this role may not
        allowed = args.forwarded_allow_ips or os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1"
        print(f"submission gate on http://{args.host}:{args.port} (docs: /docs), database {safe_url(url)}",
              flush=True)
        uvicorn.run(create_app(url, rate=args.rate, burst=args.burst), host=args.host, port=args.port,
                    proxy_headers=True, forwarded_allow_ips=allowed, log_level="warning", access_log=False)
        return 0

    return exit_status(command, args.db)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gate", description="the convbench submission gate (HTTP)")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
