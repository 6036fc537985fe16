"""``sarcoscreen heights import FILE``: the patient-height registry (heights for SMI) from a CSV.

The summary goes to stdout, each refused row to stderr; exit status 1 when any row was refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sarcoscreen.node.commands.command import SubParsers
from sarcoscreen.node.commands.database import with_database
from sarcoscreen.node.commands.errors import ExitCode
from sarcoscreen.node.config import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["add_parser", "run"]


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser("heights", help="The patient-height registry (heights for SMI).")
    actions = parser.add_subparsers(dest="heights_action", required=True, metavar="ACTION")
    import_csv = actions.add_parser(
        "import", help="Import a CSV with columns patient_id, height_m (or height_cm) and optional measured_on.")
    import_csv.add_argument("file", type=Path)
    import_csv.set_defaults(run=run, needs_settings=True)


@with_database
def run(args: argparse.Namespace, settings: Settings, db: Engine) -> int:
    from sarcoscreen.db.heights import import_heights_csv
    from sarcoscreen.db.session import session_scope

    with session_scope(db) as session:
        report = import_heights_csv(session, args.file)
    print(report.summary())
    for error in report.errors:
        print(f"  {error}", file=sys.stderr)
    return ExitCode.OK if not report.errors else ExitCode.FAILED
