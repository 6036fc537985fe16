"""The page of one series, ``/series/<database id>``: its UID, state, skip reason and jobs.

Links to a series use the database id, never a patient identifier. This is the minimal page; it is meant to grow
(measurements, outputs, events).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from sarcoscreen.node.web.auth import page
from sarcoscreen.node.web.console import console_of

__all__ = ["routes"]


def _series(request: Request) -> Response:
    from sarcoscreen.db.queries import series_detail
    from sarcoscreen.db.session import session_scope

    console = console_of(request)
    series_id = int(request.path_params["series_id"])
    with session_scope(console.db) as session:
        detail = series_detail(session, series_id)
    if detail is None:
        return console.render(request, "message.html", {"title": "No such series",
                                                        "message": f"There is no series {series_id}."},
                              status_code=404)
    return console.render(request, "series.html", {"title": f"Series {series_id}", "series": detail})


def routes() -> list[BaseRoute]:
    return [page("/series/{series_id:int}", _series)]
