"""``sarcoscreen worker``: process queued jobs - load, segment, measure, write SEG/SR, queue the deliveries - in
one or more worker processes until SIGTERM. The workers themselves are `sarcoscreen.node.worker` and
`sarcoscreen.node.worker_pool`; this command brings the schema up to date when configured and starts them."""

from __future__ import annotations

import argparse

from sarcoscreen.node.commands.command import SubParsers, loaded
from sarcoscreen.node.commands.database import database_errors, migrate_if_configured
from sarcoscreen.node.commands.errors import ExitCode
from sarcoscreen.node.config import Settings

__all__ = ["add_parser", "run"]


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser("worker", help="Process queued jobs: load, segment, measure, write SEG/SR, queue "
                                 "the deliveries (until SIGTERM).")
    parser.add_argument("--concurrency", type=int, metavar="N", help="Worker processes (default worker.concurrency).")
    parser.set_defaults(run=run, needs_settings=True)


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.node.worker_pool import run_workers

    settings = loaded(settings)
    with database_errors(settings.database_url):
        migrate_if_configured(settings)
        run_workers(settings, args.concurrency or settings.worker.concurrency)
    return ExitCode.OK
