"""The study's outputs: a report (Markdown and HTML, built from the same blocks so they hold the same numbers),
the numbers as CSV tables and as one JSON file (``results.json``, which ``sarcoscreen calibrate`` reads).

Files in the output folder::

    report.md, report.html       tables, figures, provenance, join and validation outcome, limits
    results.json                 everything (format sarcoscreen-study/1)
    correlations.csv             per stratum and group: SMM and DXA mean/SD, Spearman and Pearson with CI
    roc.csv                      per sex and group: AUC with DeLong CI, Youden cut-off, sensitivity, specificity
    auc_comparisons.csv          pairwise DeLong tests between the groups
    subjects.csv                 per joined subject: DXA values, CT SMM and SMI per group (pseudonymous ids)
    join.csv                     per cohort row: joined (key, source) or not joined (reason)
    cohort_issues.csv            per refused row and reason, and warnings
    figures/                     scatter_smm_dxa.png/.svg, roc_smi.png/.svg

Every CSV has a ``synthetic`` column, and the report's title and first line say SYNTHETIC, when the cohort or
the measurements are synthetic.
"""

from __future__ import annotations

import csv
import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sarcoscreen.inference.catalogue import Group
from sarcoscreen.reports.study.analysis import SEX_NAMES, StudyResults, as_plain
from sarcoscreen.reports.study.statistics import CorrelationResult

__all__ = ["STUDY_FORMAT", "study_json", "write_study_outputs"]

STUDY_FORMAT = "sarcoscreen-study/1"

_OWN_GROUPS_NOTE = (
    "{names}: sarcoscreen's own group, not one of the reference study's. It is analysed like the reference study's "
    "groups, but the reference study published no results for it: its numbers here stand alone and must not be "
    "read as a repetition of the reference study."
)


def _group_name(group: Group) -> str:
    """A group in the report: its title, lower-case; sarcoscreen's own groups marked as such."""
    name = group.title[0].lower() + group.title[1:]
    return name if group.of_reference_study else f"{name} (sarcoscreen's own group)"


# --- number formatting -----------------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _ci(low: float | None, high: float | None, digits: int = 2) -> str:
    return "" if low is None or high is None else f" ({low:.{digits}f} to {high:.{digits}f})"


def _r(result: CorrelationResult) -> str:
    return "n/a" if result.r is None else f"{result.r:.2f}{_ci(result.ci_low, result.ci_high)}"


def _stratum(name: str) -> str:
    return SEX_NAMES.get(name, name)


# --- blocks rendered to Markdown and HTML ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    kind: str
    """``h1``, ``h2``, ``p``, ``strong``, ``ul``, ``table``, ``img``."""
    text: str = ""
    items: tuple[str, ...] = ()
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()


def _md(blocks: Sequence[_Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.text}")
        elif b.kind == "h2":
            out.append(f"## {b.text}")
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "strong":
            out.append(f"**{b.text}**")
        elif b.kind == "ul":
            out.append("\n".join(f"- {item}" for item in b.items) if b.items else "- none")
        elif b.kind == "table":
            def cells(values: Sequence[str]) -> str:
                return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"
            lines = [cells(b.header), "| " + " | ".join("---" for _ in b.header) + " |"]
            lines.extend(cells(r) for r in b.rows)
            out.append("\n".join(lines))
        elif b.kind == "img":
            out.append(f"![{b.text}]({b.items[0]})")
        out.append("")
    return "\n".join(out)


def _html(blocks: Sequence[_Block], title: str, synthetic: bool) -> str:
    e = html.escape
    body: list[str] = []
    for b in blocks:
        if b.kind in ("h1", "h2", "p"):
            body.append(f"<{b.kind}>{e(b.text)}</{b.kind}>")
        elif b.kind == "strong":
            body.append(f'<p class="banner"><strong>{e(b.text)}</strong></p>')
        elif b.kind == "ul":
            body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in (b.items or ("none",))) + "</ul>")
        elif b.kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif b.kind == "img":
            body.append(f'<figure><img src="{e(b.items[0])}" alt="{e(b.text)}"><figcaption>{e(b.text)}'
                        "</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
             "td,th{border:1px solid #bbb;padding:0.25em 0.5em;text-align:left;vertical-align:top}"
             "th{background:#eee}img{max-width:100%}"
             ".banner{background:#fde2e1;border:2px solid #c0392b;padding:0.6em;color:#7b1d14}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
            f"<style>{style}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")


# --- the report's content --------------------------------------------------------------------------------------


def _results_line(results: StudyResults, stratum: str) -> str:
    """The reference study's results line for its groups; sarcoscreen's own groups in a sentence of their own."""
    rows = [results.correlation(stratum, g) for g in Group if g.of_reference_study]
    smm = ", ".join(f"{r.smm_kg.text()} kg ({_group_name(r.group)}, n = {r.n})" for r in rows)
    summary = next(s for s in results.strata if s.stratum == stratum)
    dxa = f"{summary.dxa_leg_lean_kg.text()} kg (n = {summary.n})"
    corr = ", ".join(f"{_group_name(r.group)} r = {_f(r.spearman.r)}" for r in rows)
    line = (f"{_stratum(stratum).capitalize()}: CT SMM {smm}; DXA lean mass of the lower extremities {dxa}. "
            f"Spearman correlation with DXA lean mass: {corr}.")
    own = [results.correlation(stratum, g) for g in Group if not g.of_reference_study]
    if own:
        line += " Not in the reference study: " + ", ".join(
            f"{_group_name(r.group)} CT SMM {r.smm_kg.text()} kg (n = {r.n}), Spearman r = {_f(r.spearman.r)}"
            for r in own) + "."
    return line


def _own_groups_note() -> list[_Block]:
    names = [g.title for g in Group if not g.of_reference_study]
    return [_Block("p", _OWN_GROUPS_NOTE.format(names="; ".join(names)))] if names else []


def _blocks(results: StudyResults) -> list[_Block]:
    b: list[_Block] = [_Block("h1", results.title)]
    if results.synthetic:
        b.append(_Block("strong", "SYNTHETIC DATA - NOT PATIENT DATA. A digital phantom cohort with a statistical "
                                  "model of DXA: these numbers show that the analysis runs, not how well CT "
                                  "identifies sarcopenia."))
    cohort, join = results.cohort, results.join
    b += [
        _Block("h2", "Provenance"),
        _Block("ul", items=(
            f"Created {results.created} by sarcoscreen {results.software_version}",
            f"Cohort file {cohort.path.name} (SHA-256 {cohort.sha256[:16]}...)",
            f"CT measurements: {results.measurement_source}",
            f"Engine(s): {'; '.join(results.engines) or 'n/a'}; density rule(s): "
            f"{'; '.join(results.density_rules) or 'n/a'}",
            f"Reference standard: {results.definition.describe()} - {results.definition.citation}",
            f"CT SMI = SMM / height^2 with the cohort's height; one value per patient by the side rule "
            f"'{results.side_rule.value}' (the rule the node screens with)",
        )),
        _Block("h2", "Cohort and join"),
        _Block("p", f"{cohort.summary()}. {join.summary()}."
                    + (f" {join.unused_series} measured series were not asked for by any row." if join.unused_series
                       else "")),
    ]
    if cohort.errors:
        b += [_Block("p", "Rows refused by validation (every reason):"),
              _Block("table", header=("row", "subject", "reason"),
                     rows=tuple((str(e.row), e.subject_id, e.message) for e in cohort.errors))]
    if join.not_joined:
        b += [_Block("p", "Rows not joined:"),
              _Block("table", header=("row", "subject", "reason"),
                     rows=tuple((str(n.row.row), n.row.subject_id, n.reason) for n in join.not_joined))]
    if results.warnings or results.measurement_problems:
        b += [_Block("p", "Warnings:"), _Block("ul", items=(*results.warnings, *results.measurement_problems))]
    b += [
        _Block("h2", "Subjects"),
        _Block("table", header=("stratum", "n", f"low muscle mass ({results.definition.name})", "height (m)",
                                "DXA SMI (kg/m²)", "DXA lean mass, legs (kg)"),
               rows=tuple((_stratum(s.stratum), str(s.n), str(s.n_low), s.height_m.text(), s.dxa_smi.text(),
                           s.dxa_leg_lean_kg.text()) for s in results.strata)),
        _Block("h2", "Results"),
    ]
    b += [_Block("p", _results_line(results, s.stratum)) for s in results.strata]
    b += _own_groups_note()
    b += [
        _Block("h2", "CT skeletal muscle mass against DXA lean mass"),
        _Block("table", header=("stratum", "group", "n", "CT SMM (kg)", "DXA lean mass (kg)",
                                "Spearman r (95% CI)", "p", "Pearson r (95% CI)", "p", "DXA = a + b x CT SMM",
                                "left out"),
               rows=tuple((_stratum(r.stratum), _group_name(r.group), str(r.n), r.smm_kg.text(),
                           r.dxa_leg_lean_kg.text(), _r(r.spearman), _p(r.spearman.p_value), _r(r.pearson),
                           _p(r.pearson.p_value),
                           "n/a" if r.fit is None else f"{r.fit.intercept:.2f} + {r.fit.slope:.2f} x",
                           "; ".join(f"{k}: {v}" for k, v in r.excluded.items()))
                          for r in results.correlations)),
        _Block("img", "CT SMM against DXA lean mass", items=("figures/scatter_smm_dxa.png",)),
        _Block("h2", f"CT SMI for low muscle mass by DXA ({results.definition.name})"),
        _Block("table", header=("sex", "group", "n", "low", "SMI low (kg/m²)", "SMI not low (kg/m²)",
                                "AUC (95% CI, DeLong)", "optimal cut-off: SMI <", "sensitivity (95% CI)",
                                "specificity (95% CI)", "Youden J", "note"),
               rows=tuple(_roc_cells(r) for r in results.rocs)),
        _Block("img", "ROC curves of CT SMI", items=("figures/roc_smi.png",)),
        _Block("h2", "Comparison of the groups' AUCs (paired DeLong test)"),
        _Block("table", header=("sex", "groups", "n", "low", "AUC 1", "AUC 2", "difference (95% CI)", "z", "p",
                                "note"),
               rows=tuple((_stratum(p.stratum), f"{_group_name(p.group_1)} vs {_group_name(p.group_2)}",
                           str(p.n), str(p.n_low),
                           _f(p.test.auc_1 if p.test else None, 3), _f(p.test.auc_2 if p.test else None, 3),
                           "n/a" if p.test is None else f"{p.test.difference:.3f}"
                                                        f"{_ci(p.test.ci_low, p.test.ci_high, 3)}",
                           _f(p.test.z if p.test else None, 2), _p(p.test.p_value if p.test else None), p.note)
                          for p in results.pairs)),
        _Block("h2", "Methods and limits"),
        _Block("ul", items=(
            "Spearman r with a t-approximation p-value and a Fisher-z 95% CI (SE sqrt(1.06/(n-3)), Fieller, "
            "Hartley & Pearson 1957); Pearson r with Fisher-z CI.",
            "ROC: empirical curve; AUC with DeLong's variance (DeLong et al. 1988, Sun & Xu 2014 algorithm) and "
            "a normal 95% CI; paired DeLong tests between groups on the patients measured in both.",
            "Optimal cut-off: maximum Youden index (ties: higher sensitivity), midway between adjacent observed "
            "SMI values; sensitivity and specificity with Wilson 95% intervals.",
            "CT SMI is not DXA SMI: CT measures the mass of segmented muscle in the scanned range, DXA the lean "
            "soft tissue of the limbs. Only the site's own cut-offs are meaningful; published DXA cut-offs must "
            "never be applied to CT SMI.",
            "The cut-off is chosen on the same patients it is evaluated on: sensitivity and specificity are "
            "optimistic. Small cohorts give wide intervals; a new sample should confirm the cut-off.",
            "A calibration is site-, protocol- and engine-specific (engine and density rule above); a new engine "
            "version needs a new study.",
            *(f"{g.title} (sarcoscreen's own group) is bounded by landmarks the engine finds (see docs/engines.md); "
              "where a landmark is uncertain or outside the scan the group is not measured in that patient."
              for g in Group if not g.of_reference_study),
        )),
    ]
    return b


def _roc_cells(r: Any) -> tuple[str, ...]:
    o = r.optimal
    ci = "" if r.auc_ci is None else _ci(r.auc_ci[0], r.auc_ci[1], 3)
    return (
        _stratum(r.stratum), _group_name(r.group), str(r.n), str(r.n_low), r.smi_low.text(), r.smi_not_low.text(),
        "n/a" if r.auc is None else f"{r.auc:.3f}{ci}",
        "n/a" if o is None else f"{o.cutoff:.3f}",
        "n/a" if o is None else f"{o.sensitivity:.2f}"
                                f"{_ci(*(o.sensitivity_ci or (None, None)))} ({o.true_positive}/{r.n_low})",
        "n/a" if o is None else f"{o.specificity:.2f}"
                                f"{_ci(*(o.specificity_ci or (None, None)))} ({o.true_negative}/{r.n - r.n_low})",
        "n/a" if o is None else f"{o.youden_j:.2f}",
        r.note,
    )


# --- JSON and CSV ----------------------------------------------------------------------------------------------


def study_json(results: StudyResults) -> dict[str, Any]:
    """The results as JSON-ready data (format `STUDY_FORMAT`); ROC curves included."""
    cohort = results.cohort
    return {
        "format": STUDY_FORMAT,
        "title": results.title,
        "synthetic": results.synthetic,
        "created": results.created,
        "software_version": results.software_version,
        "reference_standard": {"key": results.definition.key, "name": results.definition.name,
                               "text": results.definition.describe(), "citation": results.definition.citation,
                               "women_kg_m2": results.definition.women_kg_m2,
                               "men_kg_m2": results.definition.men_kg_m2},
        "side_rule": results.side_rule.value,
        "groups": [{"group": g.value, "title": g.title, "of_reference_study": g.of_reference_study} for g in Group],
        "height_source": "cohort file",
        "cohort": {"file": cohort.path.name, "sha256": cohort.sha256, "rows_read": cohort.rows_read,
                   "rows_accepted": len(cohort.rows), "rows_refused": len(cohort.refused_rows),
                   "blank_lines": cohort.blank_lines, "ignored_columns": list(cohort.ignored_columns),
                   "errors": [str(e) for e in cohort.errors], "synthetic": cohort.synthetic},
        "measurements": {"source": results.measurement_source, "problems": list(results.measurement_problems),
                         "engines": list(results.engines), "density_rules": list(results.density_rules)},
        "join": {"joined": len(results.join.joined), "not_joined": len(results.join.not_joined),
                 "unused_series": results.join.unused_series,
                 "reasons": [{"row": n.row.row, "subject_id": n.row.subject_id, "reason": n.reason}
                             for n in results.join.not_joined]},
        "warnings": list(results.warnings),
        "strata": as_plain(results.strata),
        "correlations": as_plain(results.correlations),
        "roc": as_plain(results.rocs),
        "auc_comparisons": as_plain(results.pairs),
    }


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]], synthetic: bool) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["synthetic", *header])
        for row in rows:
            writer.writerow(["true" if synthetic else "false",
                             *("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in row)])
    os.replace(tmp, path)
    return path


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _tables(results: StudyResults, out: Path) -> dict[str, Path]:
    s = results.synthetic
    files = {
        "correlations": _write_csv(out / "correlations.csv", (
            "stratum", "group", "of_reference_study", "n", "smm_kg_mean", "smm_kg_sd", "dxa_leg_lean_kg_mean",
            "dxa_leg_lean_kg_sd", "spearman_r", "spearman_p", "spearman_ci95_low", "spearman_ci95_high", "pearson_r",
            "pearson_p", "pearson_ci95_low", "pearson_ci95_high", "fit_intercept_kg", "fit_slope"), [
            (r.stratum, r.group.value, _bool(r.group.of_reference_study), r.n, r.smm_kg.mean, r.smm_kg.sd,
             r.dxa_leg_lean_kg.mean, r.dxa_leg_lean_kg.sd, r.spearman.r, r.spearman.p_value, r.spearman.ci_low,
             r.spearman.ci_high, r.pearson.r, r.pearson.p_value, r.pearson.ci_low, r.pearson.ci_high,
             r.fit.intercept if r.fit else None, r.fit.slope if r.fit else None) for r in results.correlations], s),
        "roc": _write_csv(out / "roc.csv", (
            "sex", "group", "of_reference_study", "n", "n_low_muscle_mass", "smi_low_mean", "smi_low_sd",
            "smi_not_low_mean", "smi_not_low_sd", "auc", "auc_se_delong", "auc_ci95_low", "auc_ci95_high",
            "cutoff_smi_below", "sensitivity", "sensitivity_ci95_low", "sensitivity_ci95_high", "specificity",
            "specificity_ci95_low", "specificity_ci95_high", "youden_j", "note"), [
            (r.stratum, r.group.value, _bool(r.group.of_reference_study), r.n, r.n_low, r.smi_low.mean,
             r.smi_low.sd, r.smi_not_low.mean, r.smi_not_low.sd, r.auc, r.auc_se, *(r.auc_ci or (None, None)),
             *((r.optimal.cutoff, r.optimal.sensitivity, *(r.optimal.sensitivity_ci or (None, None)),
                r.optimal.specificity, *(r.optimal.specificity_ci or (None, None)), r.optimal.youden_j)
               if r.optimal else (None,) * 8), r.note) for r in results.rocs], s),
        "auc_comparisons": _write_csv(out / "auc_comparisons.csv", (
            "sex", "group_1", "group_2", "n", "n_low_muscle_mass", "auc_1", "auc_2", "difference", "ci95_low",
            "ci95_high", "z", "p", "note"), [
            (p.stratum, p.group_1.value, p.group_2.value, p.n, p.n_low,
             *((p.test.auc_1, p.test.auc_2, p.test.difference, p.test.ci_low, p.test.ci_high, p.test.z,
                p.test.p_value) if p.test else (None,) * 7), p.note) for p in results.pairs], s),
        "subjects": _write_csv(out / "subjects.csv", (
            "subject_id", "sex", "height_m", "dxa_leg_lean_mass_kg", "dxa_smi_kg_m2", "low_muscle_mass",
            *(f"{g.value}_smm_kg" for g in Group), *(f"{g.value}_smi_kg_m2" for g in Group), "join_key",
            "engine"), [
            (x.subject_id, x.sex, x.height_m, x.dxa_leg_lean_kg, x.dxa_smi_kg_m2, _bool(x.low_muscle_mass),
             *(x.smm_kg[g] for g in Group), *(x.smi_kg_m2[g] for g in Group), x.join_key, x.engine)
            for x in results.subjects], s),
        "join": _write_csv(out / "join.csv", ("row", "subject_id", "joined", "key_or_reason"), [
            *((j.row.row, j.row.subject_id, "true", j.key) for j in results.join.joined),
            *((n.row.row, n.row.subject_id, "false", n.reason) for n in results.join.not_joined)], s),
        "cohort_issues": _write_csv(out / "cohort_issues.csv", ("row", "subject_id", "kind", "message"), [
            *((e.row, e.subject_id, "error", e.message) for e in results.cohort.errors),
            *((w.row, w.subject_id, "warning", w.message) for w in results.cohort.warnings)], s),
    }
    return files


def write_study_outputs(results: StudyResults, out: Path) -> dict[str, Path]:
    """Write the report, the figures, results.json and the CSV tables into `out`."""
    from sarcoscreen.reports.study.figures import write_figures

    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for kind, paths in write_figures(results, out / "figures").items():
        for path in paths:
            files[f"figure_{kind}_{path.suffix[1:]}"] = path
    blocks = _blocks(results)
    files["report_md"] = _write_text(out / "report.md", _md(blocks))
    files["report_html"] = _write_text(out / "report.html", _html(blocks, results.title, results.synthetic))
    files["results_json"] = _write_text(out / "results.json", json.dumps(study_json(results), indent=2) + "\n")
    files.update(_tables(results, out))
    return files
