"""The campaign's table: one row per part and database, with what must be zero, and the findings in words.

Columns: trials (kills, fuzz cases, malformed items, associations), acknowledged and indexed instances, lost
(an acknowledged instance not indexed with its file, a refused one not quarantined, an output of a processed
series that never reached the destination, an acknowledged instance whose content was not kept), duplicated (an
instance indexed twice, a second distinct object at the destination for one series and kind), crashed (see
`chaos.node_control`), PHI (patient values found by `chaos.phi`), unfinished (the node not idle in time, a
sender that could not finish). A part passes when all of these are 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from chaos.concurrency import ConcurrencyResult
from chaos.fuzz import FuzzResult
from chaos.kill_trials import FirstStartResult, KillTrialsResult
from chaos.malformed import MalformedResult

__all__ = ["PartSummary", "format_table", "summarize"]

Result = KillTrialsResult | FirstStartResult | FuzzResult | MalformedResult | ConcurrencyResult


@dataclass
class PartSummary:
    part: str
    backend: str
    trials: int
    acknowledged: int | None
    indexed: int | None
    lost: int
    duplicated: int
    crashed: int
    phi: int
    unfinished: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not (self.lost or self.duplicated or self.crashed or self.phi or self.unfinished)


def _kill(r: KillTrialsResult) -> PartSummary:
    inst, deliv = r.instances, r.deliveries
    lost = (len(inst.lost) if inst else 0) + (len(deliv.undelivered) + len(deliv.incomplete_analyses) if deliv else 0)
    part = {r.trials: "SIGTERM mid-work (ingest, job, delivery)", 0: "kill -9 (ingest, job, delivery)"}.get(
        r.stopped, f"kill -9 and SIGTERM ({r.stopped}) mid-work")
    summary = PartSummary(part, r.backend, r.trials, inst.acknowledged if inst else None,
                          inst.indexed if inst else None, lost,
                          (inst.duplicated if inst else 0) + (deliv.duplicated if deliv else 0), len(r.crashes),
                          len(r.phi), len(r.unfinished), r.seconds)
    flight = ", ".join(f"{name} {r.in_flight[name]}" for name in ("ingest", "job", "delivery", "idle")
                       if r.in_flight[name])
    kills = r.trials - r.stopped
    summary.notes.append(f"trials that found in flight: {flight}"
                         + (f"; kill -9 of the whole process group in {r.whole_group} of {kills}" if kills else "")
                         + (f"; {r.moments_missed} drawn moments did not come (stopped anyway)"
                            if r.moments_missed else ""))
    if deliv:
        summary.notes.append(f"{r.series_sent} series sent, {deliv.processed} processed, {deliv.delivered} of "
                             f"{deliv.outputs} outputs delivered, {deliv.resends} resends of an object the "
                             f"destination already had (same SOP Instance UID), {deliv.unreadable} unreadable, "
                             f"{len(deliv.superseded)} series with superseded results at the destination (an "
                             "analysis of the instances that had arrived before a restart, then of all)")
        summary.findings += deliv.undelivered + deliv.incomplete_analyses + deliv.duplicates
    if inst:
        summary.findings += inst.lost
    return summary


def _first_start(r: FirstStartResult) -> PartSummary:
    summary = PartSummary("kill -9 during the first start", r.backend, r.trials, None, None, 0, 0,
                          len(r.crashes) + len(r.failures), len(r.phi), 0, r.seconds)
    summary.findings += r.failures
    return summary


def _fuzz(r: FuzzResult) -> PartSummary:
    inst = r.instances
    summary = PartSummary("fuzz (every accepted transfer syntax)", r.backend, r.cases,
                          inst.acknowledged if inst else None, inst.indexed if inst else None,
                          (len(inst.lost) if inst else 0) + r.unquarantined, inst.duplicated if inst else 0,
                          len(r.crashes), len(r.phi), len(r.unfinished), r.seconds)
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(r.statuses.items()))
    states = ", ".join(f"{k} {v}" for k, v in sorted(r.series_states.items()))
    summary.notes.append(f"C-STORE of the mutated instances: {statuses}; series: {states}; "
                         f"{len(r.by_syntax)} transfer syntaxes")
    if r.intact_refused:
        summary.findings.append(f"intact instances refused: {', '.join(sorted(set(r.intact_refused)))}")
    if inst:
        summary.findings += inst.lost
    return summary


def _malformed(r: MalformedResult) -> PartSummary:
    inst = r.instances
    summary = PartSummary("malformed series", r.backend, len(r.items), inst.acknowledged if inst else None,
                          inst.indexed if inst else None, r.lost + r.unquarantined, inst.duplicated if inst else 0,
                          len(r.crashes), len(r.phi), len(r.unfinished), r.seconds)
    summary.findings += [f"{i.name}: {i.problem}" for i in r.items if i.problem]
    summary.findings += r.internal_errors
    if inst:
        summary.findings += inst.lost
    return summary


def _concurrency(r: ConcurrencyResult) -> PartSummary:
    inst = r.instances
    summary = PartSummary(f"{r.associations} simultaneous associations", r.backend, r.associations,
                          inst.acknowledged if inst else None, inst.indexed if inst else None,
                          (len(inst.lost) if inst else 0) + len(r.wrong_counts), inst.duplicated if inst else 0,
                          len(r.crashes), len(r.phi), len(r.unfinished) + len(r.not_acknowledged), r.seconds)
    summary.notes.append(f"{r.sent} instances sent ({r.racing} associations racing another with the same series), "
                         f"{r.acknowledged_instances} distinct acknowledged; at most {r.most_at_once} associations "
                         "open at once")
    summary.findings += r.not_acknowledged + r.wrong_counts
    return summary


def summarize(result: Result) -> PartSummary:
    """The table row of one part's result, with its notes and findings (crashes, PHI and unfinished included)."""
    if isinstance(result, KillTrialsResult):
        summary = _kill(result)
    elif isinstance(result, FirstStartResult):
        summary = _first_start(result)
    elif isinstance(result, FuzzResult):
        summary = _fuzz(result)
    elif isinstance(result, MalformedResult):
        summary = _malformed(result)
    else:
        summary = _concurrency(result)
    summary.findings += [f"crash: {c}" for c in result.crashes]
    summary.findings += [f"PHI: {hit}" for hit in result.phi]
    summary.findings += [f"unfinished: {u}" for u in getattr(result, "unfinished", [])]
    return summary


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)


def format_table(rows: Iterable[PartSummary], *, findings_per_row: int = 12) -> str:
    """The Markdown table, then the notes and findings of each row."""
    rows = list(rows)
    lines = ["| part | database | trials | acknowledged | indexed | lost | duplicated | crashed | PHI | unfinished "
             "| s |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r.part} | {r.backend} | {r.trials} | {_cell(r.acknowledged)} | {_cell(r.indexed)} | "
                     f"{r.lost} | {r.duplicated} | {r.crashed} | {r.phi} | {r.unfinished} | {r.seconds:.0f} |")
    lines.append("")
    for r in rows:
        verdict = "pass" if r.passed else "FAIL"
        lines.append(f"{r.part}, {r.backend}: {verdict}")
        lines += [f"  - {note}" for note in r.notes]
        for finding in r.findings[:findings_per_row]:
            lines.append(f"  ! {finding}")
        if len(r.findings) > findings_per_row:
            lines.append(f"  ! ... and {len(r.findings) - findings_per_row} more")
    return "\n".join(lines)
