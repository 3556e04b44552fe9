"""`atelier` command: run the whole product, and operator commands."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="atelier", description="Atelier operator commands")
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="start the whole product on its embedded defaults")
    run_parser.add_argument(
        "--cluster",
        action="store_true",
        help="the production shape on one machine: 3 NATS nodes, 2 replicas of every process",
    )
    revision = sub.add_parser("makemigration", help="autogenerate a service's next Alembic revision")
    revision.add_argument("service")
    revision.add_argument("-m", "--message", required=True)
    revision.add_argument(
        "--server", default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    sub.add_parser("reconcile", help="check every ledger invariant; exits non-zero naming each violation")
    args = parser.parse_args(argv)
    if args.command == "run":
        from devkit.launcher import run

        sys.exit(run(cluster=args.cluster))
    if args.command == "reconcile":
        # The ledger owns the check; devkit only knows the module to run (no domain import here).
        sys.exit(subprocess.call([sys.executable, "-m", "services.ledger", "reconcile"]))
    if args.command == "makemigration":
        from devkit.revisions import make_revision

        make_revision(args.service, args.message, args.server)


if __name__ == "__main__":
    main()
