"""The results page's query string: its filters, sort and page, parsed and checked, and written back for links.

Everything here may appear in a URL and so in the access log; the patient filter is not here (it is posted and kept
on the server: `sarcoscreen.node.web.patient_filter`). The exports take the same query string as the page, so a
download holds exactly the rows shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import urlencode

from sarcoscreen.db.models import Completeness, SeriesState
from sarcoscreen.db.queries import GROUPS, RESULT_SORTS, ResultFilters

__all__ = ["MAX_PER_PAGE", "BadQueryError", "ResultsQuery", "parse_results_query"]

MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 50
_FLAGS = ("1", "true", "on", "yes")
_SERIES_STATES = tuple(s.value for s in SeriesState)
"""The values the ``state`` filter takes."""


class BadQueryError(ValueError):
    """A query string value the page does not take; the message says which and what it takes."""


@dataclass(frozen=True)
class ResultsQuery:
    """What the results page shows (apart from the patient filter)."""

    since: str = ""
    """As ``sarcoscreen results --since``: 2026-11-01, 2026-11-01T08:00, 7d, 12h, 30m."""
    state: str = ""
    flagged: bool = False
    qa: bool = False
    engine: str = ""
    group: str = ""
    completeness: str = ""
    sort: str = "time"
    order: str = "desc"
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    def filters(self, patient_id: str | None) -> ResultFilters:
        """The database filters of this query and the session's patient filter."""
        from sarcoscreen.node.commands.results import parse_since

        return ResultFilters(since=parse_since(self.since) if self.since else None, flagged=self.flagged,
                             state=self.state or None, patient_id=patient_id or None, qa=self.qa,
                             engine=self.engine or None, group=self.group or None,
                             completeness=self.completeness or None)

    def query_string(self, **changes: Any) -> str:
        """This query with `changes`, as a query string of the values that differ from the defaults ("" when
        none)."""
        query = replace(self, **changes)
        default = ResultsQuery()
        values: dict[str, str] = {}
        for f in fields(query):
            value = getattr(query, f.name)
            if value != getattr(default, f.name):
                values[f.name] = ("1" if value else "") if isinstance(value, bool) else str(value)
        return urlencode(values)

    def link(self, path: str = "/results", **changes: Any) -> str:
        """`path` with this query (and `changes`)."""
        text = self.query_string(**changes)
        return f"{path}?{text}" if text else path

    def sort_link(self, key: str) -> str:
        """The link of a column heading: sort by `key`, the other way round when it is the sort already; page 1."""
        order = ("asc" if self.order == "desc" else "desc") if key == self.sort else "desc"
        return self.link(sort=key, order=order, page=1)


def _choice(params: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = params.get(name, "").strip()
    if value and value not in choices:
        raise BadQueryError(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value


def _number(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadQueryError(f"{name}={text!r}: expected a whole number") from None
    if not low <= value <= high:
        raise BadQueryError(f"{name}={value}: expected {low} to {high}")
    return value


def parse_results_query(params: Mapping[str, str]) -> ResultsQuery:
    """The page's query from the request's query parameters; `BadQueryError` for a value it does not take. Unknown
    parameters are ignored."""
    since = params.get("since", "").strip()
    if since:
        from sarcoscreen.node.commands.results import parse_since

        try:
            parse_since(since)
        except ValueError as exc:
            raise BadQueryError(str(exc).replace("--since", "since")) from None
    group = _choice(params, "group", GROUPS)
    completeness = _choice(params, "completeness", tuple(c.value for c in Completeness))
    if group and not completeness:
        raise BadQueryError("group= needs completeness= (which completeness of that group)")
    engine = params.get("engine", "").strip()
    if len(engine) > 64:
        raise BadQueryError("engine: at most 64 characters")
    return ResultsQuery(
        since=since, state=_choice(params, "state", _SERIES_STATES),
        flagged=params.get("flagged", "").strip().lower() in _FLAGS,
        qa=params.get("qa", "").strip().lower() in _FLAGS, engine=engine, group=group, completeness=completeness,
        sort=_choice(params, "sort", tuple(RESULT_SORTS)) or "time",
        order=_choice(params, "order", ("asc", "desc")) or "desc",
        page=_number(params, "page", 1, 1, 1_000_000),
        per_page=_number(params, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE))
