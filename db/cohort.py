"""The cohort the node measured over a period, per muscle group and sex, for the web console's cohort view.

Each series counts once, with its latest done job, when that job finished in the period (``since`` inclusive,
``until`` exclusive). Per group the value is the screening SMI (``group_results.screening_smi_kg_m2`` of side
``both``: the per-side value the side rule chose, the one compared with the cut-off) and the classification the
node stored with it. Sex is the study's PatientSex: ``F``, ``M``, anything else (``O``, empty) is `OTHER_SEX`.

`cohort_counts` aggregates in the database (cheap on a large node); `cohort_values` returns the SMI values for a
plot; `cohort_calibrations` says which calibrations made the stored classifications.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from sarcoscreen.db.models import Classification, GroupResult, GroupSide, Job, JobStatus, Series, Study

__all__ = ["OTHER_SEX", "SEXES", "CohortCount", "cohort_calibrations", "cohort_counts", "cohort_values", "sex_of"]

SEXES = ("F", "M")
"""The sexes cut-offs are made for."""
OTHER_SEX = "other"
"""PatientSex neither F nor M (``O``, empty or missing)."""


def sex_of(recorded: str | None) -> str:
    """``F``, ``M`` or `OTHER_SEX` for a PatientSex as recorded."""
    value = (recorded or "").strip().upper()
    return value if value in SEXES else OTHER_SEX


@dataclass
class CohortCount:
    """The series of one group and sex."""

    group: str
    sex: str
    series: int = 0
    """Series with a result for the group."""
    measured: int = 0
    """Of those, with a screening SMI (the group complete and the height known)."""
    flagged: int = 0
    """Classified ``suspected``: below the calibrated cut-off."""
    not_suspected: int = 0
    not_classified: int = 0
    """No classification: no cut-off for the group and sex, no SMI, or a calibration that does not apply."""


def _in_period(query: Select, since: datetime, until: datetime) -> Select:  # type: ignore[type-arg]
    """`query` over ``group_results`` narrowed to the ``both`` rows of each series' latest done job, finished in
    [since, until)."""
    latest = (select(func.max(Job.id).label("job_id")).where(Job.status == JobStatus.DONE)
              .group_by(Job.series_id).subquery())
    return (query.select_from(GroupResult)
            .join(latest, latest.c.job_id == GroupResult.job_id)
            .join(Job, Job.id == GroupResult.job_id)
            .join(Series, Series.id == Job.series_id)
            .join(Study, Study.id == Series.study_id)
            .where(GroupResult.side == GroupSide.BOTH, Job.finished_at >= since, Job.finished_at < until))


def cohort_counts(session: Session, since: datetime, until: datetime,
                  groups: Iterable[str]) -> dict[tuple[str, str], CohortCount]:
    """(group, sex) -> its counts, for every group of `groups` and every sex of `SEXES` (zeros when none), and
    `OTHER_SEX` where some series have it."""
    wanted = tuple(groups)
    measured = case((GroupResult.screening_smi_kg_m2.is_(None), 0), else_=1)
    query = _in_period(select(GroupResult.muscle_group, Study.patient_sex, GroupResult.classification, measured,
                              func.count()), since, until).where(GroupResult.muscle_group.in_(wanted))
    query = query.group_by(GroupResult.muscle_group, Study.patient_sex, GroupResult.classification, measured)
    counts = {(group, sex): CohortCount(group, sex) for group in wanted for sex in SEXES}
    for group, recorded_sex, classification, has_smi, n in session.execute(query).all():
        key = (group, sex_of(recorded_sex))
        count = counts.setdefault(key, CohortCount(*key))
        count.series += n
        count.measured += n if has_smi else 0
        if classification is Classification.SUSPECTED:
            count.flagged += n
        elif classification is Classification.NOT_SUSPECTED:
            count.not_suspected += n
        else:
            count.not_classified += n
    return counts


def cohort_values(session: Session, since: datetime, until: datetime,
                  groups: Iterable[str]) -> dict[tuple[str, str], list[tuple[float, str | None]]]:
    """(group, sex) -> the screening SMI values (kg/m^2) with their classification, for the series with one."""
    query = _in_period(select(GroupResult.muscle_group, Study.patient_sex, GroupResult.screening_smi_kg_m2,
                              GroupResult.classification), since, until)
    query = query.where(GroupResult.muscle_group.in_(tuple(groups)), GroupResult.screening_smi_kg_m2.is_not(None))
    values: dict[tuple[str, str], list[tuple[float, str | None]]] = defaultdict(list)
    for group, recorded_sex, smi, classification in session.execute(query).all():
        values[(group, sex_of(recorded_sex))].append((float(smi), classification.value if classification else None))
    return dict(values)


def cohort_calibrations(session: Session, since: datetime, until: datetime) -> dict[str, int]:
    """The calibrations (by name) that classified some group of the period's series -> how many series."""
    query = _in_period(select(GroupResult.calibration_name, func.count(func.distinct(Job.series_id))), since, until)
    query = query.where(GroupResult.calibration_name.is_not(None)).group_by(GroupResult.calibration_name)
    return {str(name): int(n) for name, n in session.execute(query.order_by(GroupResult.calibration_name)).all()}
