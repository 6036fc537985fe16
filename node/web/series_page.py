"""The page of one series, ``/series/<database id>``, and the overlay picture of a job, ``/jobs/<job id>/overlay.png``.

The page says first why the series needs a look (skipped, failed, flagged, QA flags, not classified: with the
reason), then the results of its latest done job (``?job=<id>``: another job of the series): the overlay, the
structures, the groups with the screening, the landmarks (from the job's ``measurements.json``), engine, density
rule and height; the DICOM outputs with their UIDs and deliveries; the timeline of what happened; every job with a
link to its results. The data come from `sarcoscreen.db.series_view`.

Links use database ids, never a patient identifier. The overlay is read from the job's output folder as the
database places it (`sarcoscreen.node.web.job_files`), never from a path a request gives; 404 when retention
deleted it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute

from sarcoscreen.node.web.auth import export, page
from sarcoscreen.node.web.console import console_of

if TYPE_CHECKING:
    from sarcoscreen.db.series_view import OutputRow

__all__ = ["routes"]


_MAX_ID = 2**31 - 1
"""Database ids are 32-bit integers (PostgreSQL's ``integer``): a larger number in a URL names nothing."""


def _sop_class_names(outputs: Iterable[OutputRow]) -> dict[str, str]:
    """Each output's SOP class UID -> its name in the DICOM dictionary (pydicom's)."""
    from pydicom.uid import UID

    return {o.sop_class_uid: UID(o.sop_class_uid).name for o in outputs}


def _not_found(request: Request, title: str, message: str) -> Response:
    return console_of(request).render(request, "message.html", {"title": title, "message": message},
                                      status_code=404)


def _series(request: Request) -> Response:
    from sarcoscreen.db.series_view import series_view
    from sarcoscreen.db.session import session_scope
    from sarcoscreen.node.web.job_files import OVERLAY, job_folder, landmarks

    console = console_of(request)
    series_id = int(request.path_params["series_id"])
    job_text = request.query_params.get("job", "").strip()
    if job_text and not (job_text.isdigit() and int(job_text) <= _MAX_ID):
        return PlainTextResponse("job: a job id (a whole number)", status_code=400)
    if series_id > _MAX_ID:
        return _not_found(request, "No such series", f"There is no series {series_id}.")
    job_id = int(job_text) if job_text else None
    with session_scope(console.db) as session:
        view = series_view(session, series_id, job_id)
        folder = (job_folder(session, console.settings.storage.outputs, view.results.job_id)
                  if view is not None and view.results is not None and view.results.status == "done" else None)
    if view is None:
        what = f"series {series_id}" + (f" with a job {job_id}" if job_id is not None else "")
        return _not_found(request, "No such series", f"There is no {what}.")
    return console.render(request, "series.html", {
        "title": f"Series {series_id}", "series": view, "results": view.results,
        "overlay": folder is not None and folder.file(OVERLAY) is not None,
        "purged": folder is not None and folder.purged,
        "landmarks": landmarks(folder) if folder is not None else None,
        "sop_names": _sop_class_names(view.results.outputs if view.results is not None else ()),
    })


def _overlay(request: Request) -> Response:
    from sarcoscreen.db.session import session_scope
    from sarcoscreen.node.web.job_files import OVERLAY, job_folder

    console = console_of(request)
    job_id = int(request.path_params["job_id"])
    if job_id > _MAX_ID:
        return PlainTextResponse(f"no done job {job_id}", status_code=404)
    with session_scope(console.db) as session:
        folder = job_folder(session, console.settings.storage.outputs, job_id)
    path = folder.file(OVERLAY) if folder is not None else None
    if folder is None:
        return PlainTextResponse(f"no done job {job_id}", status_code=404)
    if path is None:
        why = "deleted by retention" if folder.purged else "not there"
        return PlainTextResponse(f"the overlay of job {job_id} is {why}", status_code=404)
    try:
        content = path.read_bytes()
    except OSError:
        return PlainTextResponse(f"the overlay of job {job_id} cannot be read", status_code=404)
    return Response(content, media_type="image/png")


def routes() -> list[BaseRoute]:
    return [page("/series/{series_id:int}", _series), export("/jobs/{job_id:int}/overlay.png", _overlay)]
