"""The cohort view, ``/cohort``, and its picture, ``/cohort/smi.png``: what the node measured over a period, per
muscle group and sex.

Query (the page's form; all optional): ``since`` and ``until`` (dates, ``YYYY-MM-DD``, UTC; both days included;
by default the last 90 days up to today), ``group`` (a `Group` value; all four by default) and ``sex`` (``F`` or
``M``; both by default). A value the page does not take answers 400 naming it.

The page counts per group and sex the series measured (a screening SMI), flagged (classified ``suspected``: below
the cut-off), not suspected and not classified, from `sarcoscreen.db.cohort` (each series once, with its latest
done job finished in the period); the picture (`sarcoscreen.node.web.cohort_plot`) shows the screening SMI
distribution with the cut-offs of the calibration file in ``measurement.calibration_file`` (without one: "no
calibration: no cut-offs"). Query strings hold dates, a group and a sex only: no patient data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute

from sarcoscreen.inference.catalogue import Group
from sarcoscreen.node.config import Settings
from sarcoscreen.node.web.auth import export, page
from sarcoscreen.node.web.console import Console, console_of
from sarcoscreen.node.web.results_query import BadQueryError

__all__ = ["DEFAULT_DAYS", "CohortQuery", "parse_cohort_query", "routes"]

DEFAULT_DAYS = 90
_SEXES = ("F", "M")
_GROUPS = tuple(g.value for g in Group)


@dataclass(frozen=True)
class CohortQuery:
    """The cohort view's period, group and sex."""

    since: date
    until: date
    """Included."""
    group: str = ""
    """A `Group` value, or empty for every group."""
    sex: str = ""
    """``F``, ``M``, or empty for both."""

    @property
    def groups(self) -> tuple[str, ...]:
        return (self.group,) if self.group else _GROUPS

    @property
    def sexes(self) -> tuple[str, ...]:
        return (self.sex,) if self.sex else _SEXES

    def period(self) -> tuple[datetime, datetime]:
        """[start of `since`, start of the day after `until`) in UTC."""
        return (datetime.combine(self.since, time(), UTC),
                datetime.combine(self.until + timedelta(days=1), time(), UTC))

    def link(self, path: str = "/cohort", **changes: object) -> str:
        """`path` with this query (and `changes`) as its query string."""
        values = {"since": self.since.isoformat(), "until": self.until.isoformat(), "group": self.group,
                  "sex": self.sex, **{k: str(v) for k, v in changes.items()}}
        return f"{path}?{urlencode({k: v for k, v in values.items() if v})}"


def _date(params: Mapping[str, str], name: str, default: date) -> date:
    text = params.get(name, "").strip()
    if not text:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadQueryError(f"{name}: a date as YYYY-MM-DD, not {text[:20]!r}") from None


def parse_cohort_query(params: Mapping[str, str], today: date) -> CohortQuery:
    """The view's query from the request's parameters (`today`: the default end); `BadQueryError` for a value it
    does not take."""
    until = _date(params, "until", today)
    since = _date(params, "since", until - timedelta(days=DEFAULT_DAYS))
    if since > until:
        raise BadQueryError("since: after until")
    group, sex = params.get("group", "").strip(), params.get("sex", "").strip().upper()
    if group and group not in _GROUPS:
        raise BadQueryError(f"group: one of {', '.join(_GROUPS)}")
    if sex and sex not in _SEXES:
        raise BadQueryError("sex: F or M")
    return CohortQuery(since, until, group, sex)


@dataclass(frozen=True)
class _Cutoffs:
    values: dict[tuple[str, str], float]
    """(group, sex) -> the calibrated cut-off, kg/m^2."""
    note: str
    """Which calibration, or why there are no cut-offs."""


def _cutoffs(settings: Settings) -> _Cutoffs:
    from sarcoscreen.inference.calibration import CalibrationError, load_calibration

    path = settings.measurement.calibration_file
    if path is None:
        return _Cutoffs({}, "no calibration: no cut-offs")
    try:
        calibration = load_calibration(path)
    except CalibrationError as exc:
        return _Cutoffs({}, f"the calibration file cannot be used ({exc}): no cut-offs")
    return _Cutoffs({(c.group.value, c.sex): c.smi_cutoff_kg_m2 for c in calibration.cutoffs},
                    f"cut-offs of calibration {calibration.describe()} (measurement.calibration_file)")


def _query(request: Request) -> CohortQuery:
    return parse_cohort_query(request.query_params, datetime.now(UTC).date())


def _asked(request: Request) -> tuple[Console, CohortQuery] | Response:
    """The console and the query of a cohort request, or the 400 answer naming the bad field."""
    try:
        return console_of(request), _query(request)
    except BadQueryError as exc:
        return PlainTextResponse(str(exc), status_code=400)


def _cohort(request: Request) -> Response:
    from sarcoscreen.db.cohort import OTHER_SEX, cohort_calibrations, cohort_counts
    from sarcoscreen.db.session import session_scope
    from sarcoscreen.node.web.cohort_plot import GROUP_NAMES

    asked = _asked(request)
    if isinstance(asked, Response):
        return asked
    console, q = asked
    since, until = q.period()
    with session_scope(console.db) as session:
        counts = cohort_counts(session, since, until, q.groups)
        calibrations = cohort_calibrations(session, since, until)
    sexes = (*q.sexes, OTHER_SEX) if not q.sex else q.sexes
    rows = [counts[(g, s)] for g in q.groups for s in sexes if (g, s) in counts]
    cutoffs = _cutoffs(console.settings)
    today = datetime.now(UTC).date()
    return console.render(request, "cohort.html", {
        "title": "Cohort", "q": q, "rows": rows, "cutoffs": cutoffs.values, "calibration_note": cutoffs.note,
        "calibrations": calibrations, "groups": [(g.value, g.title) for g in Group], "sexes": _SEXES,
        "group_names": GROUP_NAMES,
        "series_total": max((sum(r.series for r in rows if r.group == g) for g in q.groups), default=0),
        "quick": [(f"last {days} days", CohortQuery(today - timedelta(days=days), today, q.group, q.sex).link())
                  for days in (30, 90, 365)],
    })


def _picture(request: Request) -> Response:
    from sarcoscreen.db.cohort import cohort_values
    from sarcoscreen.db.session import session_scope
    from sarcoscreen.node.web.cohort_plot import render_cohort_png

    asked = _asked(request)
    if isinstance(asked, Response):
        return asked
    console, q = asked
    since, until = q.period()
    with session_scope(console.db) as session:
        values = cohort_values(session, since, until, q.groups)
    cutoffs = _cutoffs(console.settings)
    title = f"Screening SMI, series measured {q.since.isoformat()} to {q.until.isoformat()}; {cutoffs.note}"
    png = render_cohort_png(values, q.groups, q.sexes, cutoffs.values, title)
    return Response(png, media_type="image/png")


def routes() -> list[BaseRoute]:
    return [page("/cohort", _cohort), export("/cohort/smi.png", _picture)]
