"""``sarcoscreen run``: everything in one process tree - ``serve`` plus worker processes - until SIGTERM (the
embedded default; `sarcoscreen.node.service`). A node that cannot start is one line on stderr with exit status 1.
"""

from __future__ import annotations

import argparse

from sarcoscreen.node.commands.command import SubParsers, loaded
from sarcoscreen.node.commands.database import database_errors
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import Settings

__all__ = ["add_parser", "run"]


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser("run", help="Everything in one: serve plus worker processes (the embedded default).")
    parser.add_argument("--concurrency", type=int, metavar="N", help="Worker processes (default worker.concurrency).")
    parser.set_defaults(run=run, needs_settings=True)


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.node.service import ServiceError, serve_until_signal

    settings = loaded(settings)
    with database_errors(settings.database_url):
        try:
            serve_until_signal(settings, workers=args.concurrency or settings.worker.concurrency)
        except ServiceError as exc:
            raise UserError(str(exc), ExitCode.FAILED) from None
    return ExitCode.OK
