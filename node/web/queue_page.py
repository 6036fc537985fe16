"""The queue page (``/queue``): jobs with their status, attempts, error and series, the outbox per destination, and
Retry and Cancel buttons.

The buttons post (with the CSRF token) to ``/queue/<job id>/retry`` and ``/queue/<job id>/cancel``, which call
`sarcoscreen.db.queue.retry` and `cancel` exactly as ``sarcoscreen jobs retry|cancel`` does; the outcome (or why
nothing was done) is shown on the page the action returns to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute

from sarcoscreen.db.models import JobStatus
from sarcoscreen.db.queries import JobRow
from sarcoscreen.node.web.auth import action, page
from sarcoscreen.node.web.console import console_of, flash

__all__ = ["QueueQuery", "parse_queue_query", "routes"]

logger = logging.getLogger(__name__)

_MAX_PER_PAGE = 200


@dataclass(frozen=True)
class QueueQuery:
    """Which jobs the page lists: a status (or all), a page."""

    status: str = ""
    page: int = 1
    per_page: int = 50

    def link(self, **changes: object) -> str:
        values = {"status": self.status, "page": self.page, "per_page": self.per_page, **changes}
        defaults = {"status": "", "page": 1, "per_page": 50}
        text = urlencode({k: str(v) for k, v in values.items() if v != defaults[k]})
        return f"/queue?{text}" if text else "/queue"


def parse_queue_query(params: Mapping[str, str]) -> QueueQuery:
    """The page's query; values it does not take fall back to the defaults."""
    status = params.get("status", "")
    status = status if status in {s.value for s in JobStatus} else ""

    def number(name: str, default: int, high: int) -> int:
        text = params.get(name, "")
        return min(high, max(1, int(text))) if text.isdigit() else default

    return QueueQuery(status, number("page", 1, 1_000_000), number("per_page", 50, _MAX_PER_PAGE))


def _unsent(job: JobRow, *statuses: str) -> bool:
    return any(delivery.by_status.get(status) for delivery in job.deliveries for status in statuses)


def _retryable(job: JobRow) -> bool:
    """Whether `retry` would do something: a failed or cancelled job, or a done one with unsent deliveries."""
    return job.status in ("failed", "cancelled") or (job.status == "done" and
                                                     _unsent(job, "pending", "failed", "cancelled"))


def _cancellable(job: JobRow) -> bool:
    """Whether `cancel` would do something: a queued or running job, or one with pending or failed deliveries."""
    return job.status in ("queued", "running") or _unsent(job, "pending", "failed")


def _queue(request: Request) -> Response:
    from sarcoscreen.db.queries import count_jobs, delivery_totals, jobs
    from sarcoscreen.db.session import session_scope

    console = console_of(request)
    query = parse_queue_query(request.query_params)
    with session_scope(console.db) as session:
        total = count_jobs(session, status=query.status or None)
        rows = jobs(session, status=query.status or None, limit=query.per_page,
                    offset=(query.page - 1) * query.per_page)
        destinations = delivery_totals(session)
    pages = max(1, -(-total // query.per_page))
    return console.render(request, "queue.html", {
        "title": "Queue", "q": query, "jobs": rows, "total": total, "pages": pages, "destinations": destinations,
        "retryable": {job.id for job in rows if _retryable(job)},
        "cancellable": {job.id for job in rows if _cancellable(job)},
        "statuses": [s.value for s in JobStatus], "return_query": query.link().partition("?")[2],
    })


def _job_action(name: str, run: Callable[..., str]) -> Callable[[Request], Response]:
    def endpoint(request: Request) -> Response:
        from sarcoscreen.db.queue import JobStateError

        job_id = int(request.path_params["job_id"])
        try:
            outcome = run(console_of(request).db, job_id)
        except JobStateError as exc:
            flash(request, str(exc), ok=False)
        else:
            flash(request, outcome)
            logger.info("web console: %s by user %s: %s", name, request.state.user.name, outcome)
        back = parse_queue_query(dict(parse_qsl(str(request.state.form.get("query", "")))))
        return RedirectResponse(back.link(), status_code=303)

    endpoint.__name__ = f"job_{name}"
    return endpoint


def routes() -> list[BaseRoute]:
    from sarcoscreen.db.queue import cancel, retry

    return [
        page("/queue", _queue),
        action("/queue/{job_id:int}/retry", _job_action("retry", retry)),
        action("/queue/{job_id:int}/cancel", _job_action("cancel", cancel)),
    ]
