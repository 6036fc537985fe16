"""The results page (``/results``): the table of ``sarcoscreen results`` in the browser, and its exports.

* ``GET /results``: the filters of the command line (since, state, flagged, QA, patient) plus the engine and a
  group's completeness, sorted by a column (`RESULT_SORTS`), paged (``page``, ``per_page`` at most 200). Flagged
  rows, QA flags and failed series stand out (badges, row colour) and have quick filter links.
* ``GET /results.csv`` and ``/results.json``: exactly the rows the page shows for the same query string (same
  filters, sort and page), formatted as ``sarcoscreen results --format csv|json`` (`results_view.format_results`).
* ``POST /results/patient``: sets or clears the patient filter (CSRF-checked). The patient ID never goes into a
  URL: it is kept on the server for the session (`sarcoscreen.node.web.patient_filter`). Series are linked by
  their database id (``/series/<id>``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute

from sarcoscreen.db.models import Completeness, SeriesState
from sarcoscreen.db.queries import GROUPS, ResultRow
from sarcoscreen.node.web.auth import action, export, page
from sarcoscreen.node.web.console import console_of
from sarcoscreen.node.web.results_query import BadQueryError, ResultsQuery, parse_results_query

__all__ = ["ResultsPage", "load_results", "routes"]

_MAX_PATIENT_ID = 64
"""PatientID is an LO: at most 64 characters."""


@dataclass(frozen=True)
class ResultsPage:
    """The rows of one page and what the page says about them."""

    query: ResultsQuery
    patient_id: str | None
    rows: list[ResultRow]
    total: int
    engines: list[str]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.per_page))

    @property
    def first(self) -> int:
        """The 1-based number of the first row shown (0 when none)."""
        return self.query.offset + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.query.offset + len(self.rows)


def load_results(request: Request, query: ResultsQuery) -> ResultsPage:
    """The page's rows for `query` and the session's patient filter (run in the thread pool)."""
    from sarcoscreen.db.queries import count_results, engine_names, results
    from sarcoscreen.db.session import session_scope

    console = console_of(request)
    patient_id = console.patient_filters.get(request)
    filters = query.filters(patient_id)
    with session_scope(console.db) as session:
        total = count_results(session, filters)
        rows = results(session, filters=filters, sort=query.sort, descending=query.order == "desc",
                       offset=query.offset, limit=query.per_page)
        engines = engine_names(session)
    return ResultsPage(query, patient_id, rows, total, engines)


def _bad_query(request: Request, exc: BadQueryError) -> Response:
    return console_of(request).render(request, "message.html", {"title": "Results", "message": str(exc)},
                                      status_code=400)


def _results(request: Request) -> Response:
    from sarcoscreen.reports.results_table import display_groups

    try:
        query = parse_results_query(request.query_params)
    except BadQueryError as exc:
        return _bad_query(request, exc)
    shown = load_results(request, query)
    return console_of(request).render(request, "results.html", {
        "title": "Results", "page": shown, "q": query, "groups": display_groups(), "group_names": GROUPS,
        "states": [s.value for s in SeriesState], "completeness_values": [c.value for c in Completeness],
        "max_patient_id": _MAX_PATIENT_ID,
    })


def _export(fmt: str) -> Callable[[Request], Response]:
    def download(request: Request) -> Response:
        from sarcoscreen.node.results_view import format_results

        try:
            query = parse_results_query(request.query_params)
        except BadQueryError as exc:
            return Response(str(exc) + "\n", status_code=400, media_type="text/plain")
        shown = load_results(request, query)
        media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
        return Response(format_results(shown.rows, fmt), media_type=media,
                        headers={"Content-Disposition": f'attachment; filename="sarcoscreen-results.{fmt}"'})

    download.__name__ = f"results_{fmt}"
    return download


def _set_patient(request: Request) -> Response:
    form = request.state.form
    patient_id = str(form.get("patient_id", "")).strip()[:_MAX_PATIENT_ID]
    if form.get("clear"):
        patient_id = ""
    console_of(request).patient_filters.set(request, patient_id or None)
    try:  # back to the page with its other filters (parsed and written again: only known values), at page 1
        query = parse_results_query(dict(parse_qsl(str(form.get("query", "")))))
    except BadQueryError:
        query = ResultsQuery()
    return RedirectResponse(query.link(page=1), status_code=303)


def routes() -> list[BaseRoute]:
    return [
        page("/results", _results),
        export("/results.csv", _export("csv")),
        export("/results.json", _export("json")),
        action("/results/patient", _set_patient),
    ]
