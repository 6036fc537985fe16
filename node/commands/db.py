"""``sarcoscreen db upgrade [REVISION]``, ``db downgrade REVISION`` and ``db current``: the database's schema
(Alembic migrations, `sarcoscreen.db.migrate`). A database that cannot be reached, or an unknown revision, is one
line on stderr with exit status 1."""

from __future__ import annotations

import argparse

from sarcoscreen.node.commands.command import SubParsers, loaded
from sarcoscreen.node.commands.database import database_errors
from sarcoscreen.node.commands.errors import ExitCode
from sarcoscreen.node.config import Settings

__all__ = ["add_parser", "run"]


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser("db", help="Database migrations.")
    actions = parser.add_subparsers(dest="db_action", required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="Apply migrations up to REVISION (default: head).")
    upgrade.add_argument("revision", nargs="?", default="head")
    downgrade = actions.add_parser("downgrade", help="Revert migrations down to REVISION ('base': all).")
    downgrade.add_argument("revision")
    current = actions.add_parser("current", help="The database's revision.")
    for action in (upgrade, downgrade, current):
        action.set_defaults(run=run, needs_settings=True)


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.db import migrate
    from sarcoscreen.db.session import mask_url

    url = loaded(settings).database_url
    with database_errors(url):
        if args.db_action == "current":
            revision, head = migrate.current(url), migrate.head()
            state = "up to date" if revision == head else f"head is {head}: run `sarcoscreen db upgrade`"
            print(f"database {mask_url(url)}: revision {revision or '(empty)'} ({state})")
            return ExitCode.OK
        if args.db_action == "upgrade":
            migrate.upgrade(url, args.revision)
        else:
            migrate.downgrade(url, args.revision)
        print(f"database {mask_url(url)} at revision {migrate.current(url) or '(empty)'}")
    return ExitCode.OK
