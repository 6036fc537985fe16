"""``sarcoscreen jobs``: the queue and the outbox - list jobs with their delivery state per destination, retry or
cancel one.

* ``sarcoscreen jobs [--status S] [--limit N] [--format table|json]``: newest jobs first; per job the status,
  attempts, lease (owner and expiry while running), error, and for each destination how many outputs are sent,
  pending (with the next attempt and the last error) or failed.
* ``sarcoscreen jobs retry ID``: a failed or cancelled job is queued again with fresh attempts; for a done job,
  its unsent deliveries are due now.
* ``sarcoscreen jobs cancel ID``: a queued or running job is cancelled (a running worker drops its results at the
  next heartbeat); unsent deliveries of the job are cancelled too.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from sarcoscreen.node.commands.command import SubParsers
from sarcoscreen.node.commands.database import with_database
from sarcoscreen.node.commands.enum_choices import EnumValues
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from sarcoscreen.db.queries import DeliveryState, JobRow

__all__ = ["add_parser", "format_jobs", "run"]


def _job_statuses() -> type[Enum]:
    from sarcoscreen.db.models import JobStatus

    return JobStatus


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser("jobs", help="The queue and the outbox: jobs, deliveries per destination; retry or "
                                 "cancel a job.")
    parser.add_argument("--status", choices=EnumValues(_job_statuses), metavar="STATUS",  # metavar: see results
                        help="Only jobs with this status: %(choices)s.")
    parser.add_argument("--limit", type=int, default=50, help="At most this many jobs (newest first; default 50).")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(run=run, needs_settings=True)
    actions = parser.add_subparsers(dest="jobs_action", required=False, metavar="retry|cancel")
    retry = actions.add_parser("retry", help="Queue a failed/cancelled job again, or resend a done job's unsent "
                               "outputs.")
    cancel = actions.add_parser("cancel", help="Cancel a queued or running job and its unsent deliveries.")
    for action in (retry, cancel):
        action.add_argument("job_id", type=int)
        action.set_defaults(run=run, needs_settings=True)


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _delivery_text(state: DeliveryState) -> str:
    parts = [f"{n} {status}" for status, n in sorted(state.by_status.items())]
    text = f"{state.destination} ({state.address}): {', '.join(parts)} of {state.total}"
    if state.by_status.get("pending"):
        text += f"; attempt {state.attempts}, next {_time(state.next_attempt_at)}"
    if state.last_error:
        code = f"0x{state.last_status_code:04X} " if state.last_status_code is not None else ""
        text += f"; last: {code}{state.last_error}"
    return text


def _job_json(row: JobRow) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": row.id, "series_instance_uid": row.series_instance_uid, "status": row.status, "reason": row.reason,
        "attempts": row.attempts, "max_attempts": row.max_attempts, "error": row.error,
        "created_at": iso(row.created_at), "started_at": iso(row.started_at), "finished_at": iso(row.finished_at),
        "next_attempt_at": iso(row.next_attempt_at), "lease_owner": row.lease_owner,
        "lease_expires_at": iso(row.lease_expires_at), "heartbeat_at": iso(row.heartbeat_at),
        "instance_count": row.instance_count, "engine": row.engine,
        "deliveries": [{"destination": d.destination, "address": d.address, "total": d.total,
                        "by_status": d.by_status, "attempts": d.attempts, "next_attempt_at": iso(d.next_attempt_at),
                        "last_status_code": d.last_status_code, "last_error": d.last_error} for d in row.deliveries],
    }


def format_jobs(rows: list[JobRow], fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps([_job_json(r) for r in rows], indent=2) + "\n"
    if not rows:
        return "no jobs\n"
    lines = []
    for row in rows:
        head = (f"job {row.id}  {row.status:9s}  attempt {row.attempts}/{row.max_attempts}  created "
                f"{_time(row.created_at)}  series {row.series_instance_uid}")
        lines.append(head)
        if row.reason:
            lines.append(f"    why:      {row.reason}")
        if row.status == "running":
            lines.append(f"    lease:    {row.lease_owner} until {_time(row.lease_expires_at)} (heartbeat "
                         f"{_time(row.heartbeat_at)})")
        elif row.status == "queued" and row.attempts:
            lines.append(f"    next:     {_time(row.next_attempt_at)}")
        if row.finished_at:
            detail = f"{row.engine}, {row.instance_count} instances" if row.engine else ""
            lines.append(f"    finished: {_time(row.finished_at)}" + (f" ({detail})" if detail else ""))
        if row.error:
            lines.append(f"    error:    {row.error}")
        for state in row.deliveries:
            lines.append(f"    sent to   {_delivery_text(state)}")
    return "\n".join(lines) + "\n"


@with_database
def run(args: argparse.Namespace, settings: Settings, db: Engine) -> int:
    from sarcoscreen.db.queries import jobs
    from sarcoscreen.db.queue import JobStateError, cancel, retry
    from sarcoscreen.db.session import session_scope

    action = getattr(args, "jobs_action", None)
    if action is None:
        with session_scope(db) as session:
            rows = jobs(session, status=args.status, limit=args.limit)
        print(format_jobs(rows, args.format), end="")
        return ExitCode.OK
    try:
        print((retry if action == "retry" else cancel)(db, args.job_id))
    except JobStateError as exc:
        raise UserError(str(exc), ExitCode.FAILED) from None
    return ExitCode.OK
