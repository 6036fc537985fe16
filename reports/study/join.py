"""Join the cohort (DXA, height, sex) to the CT measurements, saying for every row why it was or was not joined.

Keys, most specific first: Series Instance UID, Study Instance UID, Accession Number, and - for a table of masses
that has one - the subject id. The first of the row's keys that some measurement has decides; a Series Instance
UID given in the cohort file is never replaced by a less specific key. A cohort row is joined when exactly one
measured series answers that key. It is not joined, with the reason, when

* it has no key and no table row has its subject id;
* no measured series has its key;
* its study (or accession) has more than one measured series (give the Series Instance UID to choose);
* the series' DICOM PatientSex contradicts the cohort's sex (a wrong join is more likely than a sex change);
* the series was already joined to an earlier row.

Several results for the same series (re-runs) keep the newest. A DICOM height that differs from the cohort's by
more than 5 cm is a warning (SMI in the study always uses the cohort's height).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sarcoscreen.reports.study.cohort import CohortRow
from sarcoscreen.reports.study.measurements import MeasuredSeries

__all__ = ["JoinResult", "JoinedSubject", "NotJoined", "join_cohort"]

HEIGHT_WARNING_M = 0.05


@dataclass(frozen=True)
class JoinedSubject:
    row: CohortRow
    measured: MeasuredSeries
    key: str
    """Which key joined them: ``series_instance_uid``, ``study_instance_uid``, ``accession_number``,
    ``subject_id``."""


@dataclass(frozen=True)
class NotJoined:
    row: CohortRow
    reason: str


@dataclass(frozen=True)
class JoinResult:
    joined: tuple[JoinedSubject, ...]
    not_joined: tuple[NotJoined, ...]
    warnings: tuple[str, ...]
    unused_series: int
    """Measured series that no cohort row asked for."""

    def summary(self) -> str:
        total = len(self.joined) + len(self.not_joined)
        return f"{len(self.joined)} of {total} cohort rows joined to CT measurements, {len(self.not_joined)} not"


def _newest(series: list[MeasuredSeries]) -> MeasuredSeries:
    return max(series, key=lambda s: s.created)


def _index(measured: tuple[MeasuredSeries, ...]) -> dict[str, dict[str, list[MeasuredSeries]]]:
    by_uid: dict[str, list[MeasuredSeries]] = defaultdict(list)
    without_uid: list[MeasuredSeries] = []
    for s in measured:
        (by_uid[s.series_instance_uid] if s.series_instance_uid else without_uid).append(s)
    distinct = [_newest(group) for group in by_uid.values()] + without_uid
    index: dict[str, dict[str, list[MeasuredSeries]]] = {k: defaultdict(list) for k in (
        "series_instance_uid", "study_instance_uid", "accession_number", "subject_id")}
    for s in distinct:
        for key, table in index.items():
            value = getattr(s, key)
            if value:
                table[value].append(s)
    return index


def join_cohort(rows: tuple[CohortRow, ...], measured: tuple[MeasuredSeries, ...]) -> JoinResult:
    """Join each cohort row to at most one measured series (see the module documentation)."""
    index = _index(measured)
    used: dict[int, int] = {}
    joined: list[JoinedSubject] = []
    not_joined: list[NotJoined] = []
    warnings: list[str] = []
    for row in rows:
        keys = [k for k in ("series_instance_uid", "study_instance_uid", "accession_number") if getattr(row, k)]
        if row.series_instance_uid:
            keys = keys[:1]  # a series chosen by the cohort file is never replaced by another of its study
        elif index["subject_id"].get(row.subject_id):
            keys.append("subject_id")
        if not keys:
            not_joined.append(NotJoined(row, "no join key (series_instance_uid, study_instance_uid or "
                                             "accession_number) and no measurement with this subject_id"))
            continue
        key = next((k for k in keys if index[k].get(getattr(row, k))), None)
        if key is None:
            tried = ", ".join(k.replace("_", " ") for k in keys)
            not_joined.append(NotJoined(row, f"no CT measurement with this {tried}"))
            continue
        candidates = index[key][getattr(row, key)]
        label = key.replace("_", " ")
        if len(candidates) > 1:
            not_joined.append(NotJoined(row, f"{len(candidates)} measured series share this {label}; give "
                                             "series_instance_uid in the cohort file to choose one"))
            continue
        series = candidates[0]
        if series.sex is not None and series.sex != row.sex:
            not_joined.append(NotJoined(row, f"sex differs: cohort {row.sex}, DICOM PatientSex {series.sex} "
                                             "(wrong study?)"))
            continue
        if id(series) in used:
            not_joined.append(NotJoined(row, f"its series is already joined to row {used[id(series)]}"))
            continue
        used[id(series)] = row.row
        if series.height_m is not None and abs(series.height_m - row.height_m) > HEIGHT_WARNING_M:
            warnings.append(f"row {row.row} ({row.subject_id}): the height the node used ({series.height_m:.2f} m) "
                            f"differs from the cohort's ({row.height_m:.2f} m); the study uses the cohort's")
        joined.append(JoinedSubject(row, series, key))
    engines = sorted({j.measured.engine for j in joined if j.measured.engine})
    if len(engines) > 1:
        warnings.append(f"measurements of several engines are mixed ({'; '.join(engines)}): cut-offs are "
                        "engine-specific")
    rules = sorted({j.measured.density_rule for j in joined if j.measured.density_rule})
    if len(rules) > 1:
        warnings.append(f"measurements with several density rules are mixed ({'; '.join(rules)})")
    distinct = {id(s) for table in index.values() for group in table.values() for s in group}
    return JoinResult(tuple(joined), tuple(not_joined), tuple(warnings), len(distinct - set(used)))
