"""The analysis of the reference study, on a site's joined cohort.

For each sex present (and, for the correlations, both sexes pooled when both are present) and each group of
`Group` - the reference study's three (gluteal, above-knee, all lower-extremity muscles), then sarcoscreen's own
upper gluteal group, analysed the same way but never one of the reference study's (`Group.of_reference_study`):

* CT skeletal muscle mass (SMM, both sides) and DXA lean mass of the lower extremities: mean ± SD, Spearman r
  with p-value and 95 % CI, Pearson r, least-squares line (the study's scatter plots);
* CT SMI = SMM / height^2 (the cohort's height), reduced to one value per patient by the **side rule** the node
  will screen with (mean of left and right SMI by default), so the cut-off found here is on the scale of the
  node's screening value;
* ROC of CT SMI against DXA-defined low muscle mass (`definitions`), low SMI indicating low muscle mass: AUC
  with DeLong 95 % CI, Youden-optimal cut-off with sensitivity and specificity;
* pairwise DeLong tests between the groups' AUCs, on the patients in whom both compared groups were measured
  (the pairs of the reference study's groups first).

Statistics are in `statistics`; this module only chooses the subjects and assembles the results.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from sarcoscreen.inference.catalogue import Group
from sarcoscreen.inference.sides import SideRule
from sarcoscreen.reports.study.cohort import CohortFile
from sarcoscreen.reports.study.definitions import LowMuscleMassDefinition
from sarcoscreen.reports.study.join import JoinResult
from sarcoscreen.reports.study.statistics import (
    CorrelationResult,
    Descriptive,
    LinearFit,
    PairedTest,
    RocCurve,
    YoudenPoint,
    auc_confidence_interval,
    delong,
    delong_paired_test,
    describe,
    linear_fit,
    pearson,
    roc_curve,
    spearman,
    trapezoid_auc,
    youden,
)

__all__ = ["CorrelationRow", "PairRow", "RocRow", "StudyResults", "SubjectValues", "analyse", "subject_values"]

SEX_NAMES = {"F": "women", "M": "men", "all": "women and men"}


@dataclass(frozen=True)
class SubjectValues:
    """One joined patient: DXA reference values and CT values per group."""

    subject_id: str
    sex: str
    height_m: float
    dxa_leg_lean_kg: float
    dxa_smi_kg_m2: float
    low_muscle_mass: bool
    smm_kg: dict[Group, float | None]
    """Both sides."""
    smi_kg_m2: dict[Group, float | None]
    """By the side rule, with the cohort's height."""
    reasons: dict[Group, str]
    """Why a group has no SMM / SMI."""
    join_key: str
    source: str
    engine: str


def subject_values(join: JoinResult, definition: LowMuscleMassDefinition, side_rule: SideRule) -> list[
        SubjectValues]:
    out = []
    for j in join.joined:
        row, m = j.row, j.measured
        smm: dict[Group, float | None] = {}
        smi: dict[Group, float | None] = {}
        reasons: dict[Group, str] = {}
        for group in Group:
            both = m.mass(group, "both")
            smm[group] = None if both is None else both / 1000.0
            per_side = {side: m.mass(group, side) for side in ("left", "right")}
            sides = {s: None if v is None else v / 1000.0 / row.height_m**2 for s, v in per_side.items()}
            smi[group] = side_rule.apply(sides["left"], sides["right"])
            if both is None:
                reasons[group] = m.reason(group, "both")
            elif smi[group] is None:
                missing = [s for s, v in per_side.items() if v is None]
                reasons[group] = (f"no {' and '.join(missing)} SMM for side rule {side_rule.value}: "
                                  + "; ".join(m.reason(group, s) for s in missing))
        out.append(SubjectValues(row.subject_id, row.sex, row.height_m, row.dxa_leg_lean_kg, row.dxa_smi_kg_m2,
                                 definition.is_low(row.dxa_smi_kg_m2, row.sex), smm, smi, reasons, j.key, m.source,
                                 m.engine))
    return out


@dataclass(frozen=True)
class CorrelationRow:
    stratum: str
    group: Group
    n: int
    smm_kg: Descriptive
    dxa_leg_lean_kg: Descriptive
    spearman: CorrelationResult
    pearson: CorrelationResult
    fit: LinearFit | None
    """DXA lean mass = intercept + slope x CT SMM (kg)."""
    excluded: dict[str, int] = field(default_factory=dict)
    """Why subjects of the stratum were left out (reason -> count)."""


@dataclass(frozen=True)
class RocRow:
    stratum: str
    group: Group
    n: int
    n_low: int
    smi_low: Descriptive
    smi_not_low: Descriptive
    auc: float | None
    auc_se: float | None
    auc_ci: tuple[float, float] | None
    optimal: YoudenPoint | None
    curve: RocCurve | None
    note: str = ""


@dataclass(frozen=True)
class PairRow:
    stratum: str
    group_1: Group
    group_2: Group
    n: int
    n_low: int
    test: PairedTest | None
    note: str = ""


@dataclass(frozen=True)
class StratumSummary:
    stratum: str
    n: int
    n_low: int
    height_m: Descriptive
    dxa_smi: Descriptive
    dxa_leg_lean_kg: Descriptive


@dataclass(frozen=True)
class StudyResults:
    title: str
    synthetic: bool
    created: str
    software_version: str
    definition: LowMuscleMassDefinition
    side_rule: SideRule
    cohort: CohortFile
    measurement_source: str
    measurement_problems: tuple[str, ...]
    join: JoinResult
    subjects: tuple[SubjectValues, ...]
    strata: tuple[StratumSummary, ...]
    correlations: tuple[CorrelationRow, ...]
    rocs: tuple[RocRow, ...]
    pairs: tuple[PairRow, ...]
    engines: tuple[str, ...]
    density_rules: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def roc(self, stratum: str, group: Group) -> RocRow:
        return next(r for r in self.rocs if r.stratum == stratum and r.group is group)

    def correlation(self, stratum: str, group: Group) -> CorrelationRow:
        return next(r for r in self.correlations if r.stratum == stratum and r.group is group)


def _count(reasons: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def _correlation_row(stratum: str, group: Group, subjects: list[SubjectValues]) -> CorrelationRow:
    used = [s for s in subjects if s.smm_kg[group] is not None]
    excluded = _count([s.reasons.get(group, "no SMM") for s in subjects if s.smm_kg[group] is None])
    smm = np.array([s.smm_kg[group] for s in used], dtype=float)
    dxa = np.array([s.dxa_leg_lean_kg for s in used], dtype=float)
    return CorrelationRow(stratum, group, len(used), describe(smm), describe(dxa), spearman(smm, dxa),
                          pearson(smm, dxa), linear_fit(smm, dxa), excluded)


def _roc_row(stratum: str, group: Group, subjects: list[SubjectValues]) -> RocRow:
    used = [s for s in subjects if s.smi_kg_m2[group] is not None]
    labels = np.array([s.low_muscle_mass for s in used], dtype=int)
    smi = np.array([s.smi_kg_m2[group] for s in used], dtype=float)
    n, n_low = len(used), int(labels.sum())
    low, not_low = describe(smi[labels == 1]), describe(smi[labels == 0])
    if n == 0:
        return RocRow(stratum, group, n, n_low, low, not_low, None, None, None, None, None,
                      "no patient has an SMI of this group: no ROC analysis")
    if n_low in (0, n):
        which = "no patient has" if n_low == 0 else "every patient has"
        return RocRow(stratum, group, n, n_low, low, not_low, None, None, None, None, None,
                      f"{which} low muscle mass by DXA: no ROC analysis")
    curve = roc_curve(labels, smi, low_is_positive=True)
    optimal = youden(labels, smi, low_is_positive=True)
    note = "" if optimal is not None else "no cut-off does better than chance (Youden J <= 0)"
    if n_low < 2 or n - n_low < 2:
        note = "; ".join(x for x in ("fewer than two patients in a class: no DeLong confidence interval", note) if x)
        return RocRow(stratum, group, n, n_low, low, not_low, trapezoid_auc(curve), None, None, optimal, curve, note)
    result = delong(labels, smi, low_is_positive=True)
    auc = float(result.aucs[0])
    return RocRow(stratum, group, n, n_low, low, not_low, auc, result.se(0),
                  auc_confidence_interval(auc, result.variance(0)), optimal, curve, note)


def _pair_rows(stratum: str, subjects: list[SubjectValues]) -> list[PairRow]:
    rows = []
    pairs = sorted(itertools.combinations(Group, 2),
                   key=lambda pair: not (pair[0].of_reference_study and pair[1].of_reference_study))
    for first, second in pairs:
        used = [s for s in subjects if s.smi_kg_m2[first] is not None and s.smi_kg_m2[second] is not None]
        labels = np.array([s.low_muscle_mass for s in used], dtype=int)
        n, n_low = len(used), int(labels.sum())
        if n_low < 2 or n - n_low < 2:
            rows.append(PairRow(stratum, first, second, n, n_low, None,
                                "fewer than two patients with and two without low muscle mass measured in both "
                                "groups"))
            continue
        values = np.array([[s.smi_kg_m2[first] for s in used], [s.smi_kg_m2[second] for s in used]], dtype=float)
        result = delong(labels, values, low_is_positive=True)
        rows.append(PairRow(stratum, first, second, n, n_low, delong_paired_test(result, 0, 1)))
    return rows


def analyse(cohort: CohortFile, join: JoinResult, definition: LowMuscleMassDefinition, side_rule: SideRule, *,
            measurement_source: str, measurement_problems: tuple[str, ...] = (), title: str | None = None,
            software_version: str = "0+unknown") -> StudyResults:
    """Run the study's analysis on the joined cohort."""
    subjects = subject_values(join, definition, side_rule)
    sexes = [s for s in ("F", "M") if any(x.sex == s for x in subjects)]
    synthetic = cohort.synthetic or any(j.measured.synthetic for j in join.joined)
    strata: list[StratumSummary] = []
    correlations: list[CorrelationRow] = []
    rocs: list[RocRow] = []
    pairs: list[PairRow] = []
    correlation_strata = [*sexes, "all"] if len(sexes) > 1 else sexes
    for stratum in correlation_strata:
        members = [s for s in subjects if stratum in ("all", s.sex)]
        strata.append(StratumSummary(stratum, len(members), sum(s.low_muscle_mass for s in members),
                                     describe([s.height_m for s in members]),
                                     describe([s.dxa_smi_kg_m2 for s in members]),
                                     describe([s.dxa_leg_lean_kg for s in members])))
        correlations.extend(_correlation_row(stratum, g, members) for g in Group)
        if stratum != "all":
            rocs.extend(_roc_row(stratum, g, members) for g in Group)
            pairs.extend(_pair_rows(stratum, members))
    warnings = list(join.warnings) + [str(w) for w in cohort.warnings]
    if not subjects:
        warnings.append("no cohort row could be joined to a CT measurement: nothing to analyse")
    if synthetic:
        warnings.insert(0, "SYNTHETIC data: these numbers describe a digital phantom cohort with a statistical "
                           "model of DXA, not patients")
    name = title or ("Validation study: CT muscle mass against DXA")
    if synthetic and "SYNTHETIC" not in name:
        name = f"SYNTHETIC - {name}"
    return StudyResults(
        title=name,
        synthetic=synthetic,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        software_version=software_version,
        definition=definition,
        side_rule=side_rule,
        cohort=cohort,
        measurement_source=measurement_source,
        measurement_problems=measurement_problems,
        join=join,
        subjects=tuple(subjects),
        strata=tuple(strata),
        correlations=tuple(correlations),
        rocs=tuple(rocs),
        pairs=tuple(pairs),
        engines=tuple(sorted({s.engine for s in subjects if s.engine})),
        density_rules=tuple(sorted({j.measured.density_rule for j in join.joined if j.measured.density_rule})),
        warnings=tuple(warnings),
    )


def as_plain(value: Any) -> Any:
    """Dataclasses, enums, tuples and arrays as JSON-ready values (floats kept at full precision)."""
    from dataclasses import fields, is_dataclass
    from enum import Enum

    if isinstance(value, Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(as_plain(k)): as_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [as_plain(v) for v in value.tolist()]
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if np.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
