"""The Health page, ``/health`` (signed-in users): disks, database, queue, running jobs and destinations at a glance.

The page shows `sarcoscreen.node.health.health_report`, read when the page is asked for; it holds no patient data
(job ids, states, times, lease owners, destination names, DIMSE statuses, scrubbed error texts). The same numbers
for machines are at ``/metrics`` (`sarcoscreen.node.web.probes`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from sarcoscreen.node.health import health_report
from sarcoscreen.node.web.auth import page
from sarcoscreen.node.web.console import console_of

__all__ = ["routes"]


def _mib(value: int | None) -> str:
    """Bytes as MiB for the page; ``-`` when unknown."""
    return "-" if value is None else f"{value / 2**20:,.0f} MiB"


def _health(request: Request) -> Response:
    console = console_of(request)
    report = health_report(console.settings, console.db)
    return console.render(request, "health.html", {"title": "Health", "report": report, "mib": _mib,
                                                   "min_free_mb": console.settings.storage.min_free_mb})


def routes() -> list[BaseRoute]:
    return [page("/health", _health)]
