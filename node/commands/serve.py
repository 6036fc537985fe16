"""``sarcoscreen serve``: the DICOM node without workers - Storage SCP, series watcher, sender and retention
sweeper - until SIGTERM (`sarcoscreen.node.service`). A node that cannot start (database, port, certificates) is
one line on stderr with exit status 1."""

from __future__ import annotations

import argparse

from sarcoscreen.node.commands.command import SubParsers, loaded
from sarcoscreen.node.commands.database import database_errors
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import Settings

__all__ = ["add_parser", "run"]


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser(
        "serve", help="The DICOM node without workers: Storage SCP, series watcher and sender (until SIGTERM).")
    parser.set_defaults(run=run, needs_settings=True)


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.node.service import ServiceError, serve_until_signal

    settings = loaded(settings)
    with database_errors(settings.database_url):
        try:
            serve_until_signal(settings, workers=0)
        except ServiceError as exc:
            raise UserError(str(exc), ExitCode.FAILED) from None
    return ExitCode.OK
