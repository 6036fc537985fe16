"""``sarcoscreen results``: the node's results per series for QA staff, as a table, CSV or JSON
(`sarcoscreen.node.results_view`).

Filters (combined with AND): ``--since`` (a date ``2026-11-01``, a time ``2026-11-01T08:00``, or a duration back
from now ``7d``, ``12h``, ``30m``), ``--flagged`` (a group is ``suspected``), ``--qa`` (a QA flag: a group with a
member muscle the engine did not find where the scan holds it - completeness ``not found`` - or a structure whose
segmentation uncertainty exceeds the engine's threshold), ``--status`` (the series state, one of
`sarcoscreen.db.models.SeriesState`), ``--patient ID``. The output shows patient IDs (QA staff need them); it is
for the terminal or a file, never for logs.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING

from sarcoscreen.node.commands.command import SubParsers
from sarcoscreen.node.commands.database import with_database
from sarcoscreen.node.commands.enum_choices import EnumValues
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["add_parser", "parse_since", "run"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([dhm])$")


def _series_states() -> type[Enum]:
    from sarcoscreen.db.models import SeriesState

    return SeriesState


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser("results", help="Results per series for QA (table, CSV or JSON).")
    parser.add_argument("--since", metavar="WHEN", help="2026-11-01, 2026-11-01T08:00 or a duration: 7d, 12h, 30m.")
    parser.add_argument("--flagged", action="store_true", help="Only series with a group below its cut-off.")
    parser.add_argument("--qa", action="store_true",
                        help="Only series with a QA flag: a muscle the engine did not find where the scan holds it "
                             "(a group 'not found'), or a structure above the uncertainty threshold.")
    # A metavar: argparse would otherwise list the choices (importing the models) when the parser is built.
    parser.add_argument("--status", choices=EnumValues(_series_states), metavar="STATE",
                        help="Only series in this state: %(choices)s.")
    parser.add_argument("--patient", metavar="ID", help="Only this PatientID.")
    parser.add_argument("--limit", type=int, help="At most this many series (newest first).")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.set_defaults(run=run, needs_settings=True)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d`` / ``12h`` / ``30m`` back from now, or an ISO date or date-time (UTC when no zone is given);
    `ValueError` saying what is expected otherwise."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(text.strip())
    if match:
        value, unit = float(match[1]), {"d": "days", "h": "hours", "m": "minutes"}[match[2]]
        return now - timedelta(**{unit: value})
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: expected a date (2026-11-01), a date-time (2026-11-01T08:00) or a "
                         "duration (7d, 12h, 30m)") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _since(args: argparse.Namespace) -> datetime | None:
    """``--since`` as a time; a bad value is a usage error."""
    try:
        return parse_since(args.since) if args.since else None
    except ValueError as exc:
        raise UserError(str(exc), ExitCode.USAGE) from None


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    _since(args)  # a bad --since is told before the database is touched
    return _show_results(args, settings)


@with_database
def _show_results(args: argparse.Namespace, settings: Settings, db: Engine) -> int:
    from sarcoscreen.db.queries import results
    from sarcoscreen.db.session import session_scope
    from sarcoscreen.node.results_view import format_results

    with session_scope(db) as session:
        rows = results(session, since=_since(args), flagged=args.flagged, state=args.status,
                       patient_id=args.patient, limit=args.limit, qa=args.qa)
    print(format_results(rows, args.format), end="")
    return ExitCode.OK
