"""``sarcoscreen purge [--dry-run]``: delete the spool and output files whose retention period ended
(``storage.retention_days``, ``storage.outputs_retention_days``; `sarcoscreen.node.retention`). ``serve`` and
``run`` do the same every ``storage.retention_check_s``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from sarcoscreen.node.commands.command import SubParsers, loaded
from sarcoscreen.node.commands.database import with_database
from sarcoscreen.node.commands.errors import ExitCode
from sarcoscreen.node.config import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["add_parser", "run"]


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser(
        "purge", help="Delete spool and output files whose retention period ended (storage.retention_days, "
        "storage.outputs_retention_days); 'serve' and 'run' do it every storage.retention_check_s.")
    parser.add_argument("--dry-run", action="store_true", help="Only say what would be deleted.")
    parser.set_defaults(run=run, needs_settings=True)


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    storage = loaded(settings).storage
    if storage.retention_days <= 0 and storage.outputs_retention_days <= 0:  # the database is not touched
        print("retention is off (storage.retention_days and storage.outputs_retention_days are 0): nothing to do")
        return ExitCode.OK
    return _purge(args, settings)


@with_database
def _purge(args: argparse.Namespace, settings: Settings, db: Engine) -> int:
    from sarcoscreen.node.retention import purge_expired

    print(purge_expired(db, settings, dry_run=args.dry_run).summary())
    return ExitCode.OK
