"""Site calibration: the SMI cut-offs that decide whether sarcopenia is suspected.

CT-derived SMI is not DXA SMI, so sarcoscreen never flags a patient against a cut-off it made up: a flag needs a
calibration file, written by ``sarcoscreen calibrate`` from a site's own CT + DXA cohort (the validation study),
holding per group and sex the optimal SMI cut-off with its provenance. Every flag records which calibration
(name and SHA-256 of the file) made it.

File format (JSON, ``"format": "sarcoscreen-calibration/1"``)::

    {
      "format": "sarcoscreen-calibration/1",
      "name": "site-A 2026-11",
      "created": "2026-11-24T10:00:00+00:00",
      "software_version": "0.1.0",
      "reference_standard": "AWGS 2019: DXA SMI < 5.4 kg/m2 (women), < 7.0 kg/m2 (men)",
      "side_rule": "mean",
      "primary_group": "all",
      "synthetic": false,
      "cutoffs": [
        {"group": "all", "sex": "F", "smi_cutoff_kg_m2": 5.1, "n": 60, "n_low_muscle_mass": 18,
         "auc": 0.96, "auc_ci95": [0.91, 1.0], "sensitivity": 0.89, "specificity": 0.9}
      ]
    }

A patient is "suspected" when the group's SMI (by the side rule) is below the cut-off for the patient's sex.

``group`` and ``primary_group`` are `Group` values: the reference study's ``gluteal``, ``above_knee``, ``all``, or
sarcoscreen's own ``upper_gluteal``. A file need not have a cut-off for every group (files written before the
upper gluteal group existed have none for it): a group without a cut-off is "not classified", with that reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sarcoscreen.inference.catalogue import Group
from sarcoscreen.inference.sides import SideRule

__all__ = ["FORMAT", "Calibration", "CalibrationError", "Cutoff", "load_calibration"]

FORMAT = "sarcoscreen-calibration/1"


class CalibrationError(Exception):
    """A calibration file that cannot be used; the message says which field and why."""


@dataclass(frozen=True)
class Cutoff:
    group: Group
    sex: str
    smi_cutoff_kg_m2: float
    n: int | None = None
    n_low_muscle_mass: int | None = None
    auc: float | None = None
    auc_ci95: tuple[float, float] | None = None
    sensitivity: float | None = None
    specificity: float | None = None


@dataclass(frozen=True)
class Calibration:
    name: str
    sha256: str
    side_rule: SideRule
    primary_group: Group
    cutoffs: tuple[Cutoff, ...]
    reference_standard: str = ""
    created: str = ""
    software_version: str = ""
    synthetic: bool = False
    source_path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def cutoff(self, group: Group, sex: str | None) -> Cutoff | None:
        if sex is None:
            return None
        return next((c for c in self.cutoffs if c.group is group and c.sex == sex), None)

    @property
    def engines(self) -> tuple[str, ...]:
        """The engines (``"name version"``) that measured the calibration cohort, when its provenance says."""
        provenance = self.extra.get("provenance")
        engines = provenance.get("engines") if isinstance(provenance, dict) else None
        return tuple(str(e) for e in engines) if isinstance(engines, list) else ()

    @property
    def density_rules(self) -> tuple[str, ...]:
        """The density rules (as `DensityRule.describe` words them) of the calibration cohort's masses."""
        provenance = self.extra.get("provenance")
        rules = provenance.get("density_rules") if isinstance(provenance, dict) else None
        return tuple(str(r) for r in rules) if isinstance(rules, list) else ()

    def mismatch(self, engine: str, density_rule: str) -> str | None:
        """Why this calibration does not apply to a result of `engine` (``"name version"``) measured with
        `density_rule`, or ``None``. Cut-offs are on the scale of what made them: another engine or density rule
        measures a different SMI (a calibration without that provenance applies to anything)."""
        if self.engines and engine not in self.engines:
            return f"calibration {self.name} was made with {', '.join(self.engines)}, this result with {engine}"
        if self.density_rules and density_rule not in self.density_rules:
            return (f"calibration {self.name} was made with density rule {', '.join(self.density_rules)}, this "
                    f"result with {density_rule}")
        return None

    def describe(self) -> str:
        text = f"{self.name} (sha256 {self.sha256[:12]})"
        return f"{text}, SYNTHETIC" if self.synthetic else text


def _require(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise CalibrationError(f"{where}: missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise CalibrationError(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def parse_calibration(raw: bytes, source: str = "<memory>") -> Calibration:
    """Validate and parse the bytes of a calibration file."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CalibrationError(f"{source}: not a sarcoscreen calibration (expected \"format\": \"{FORMAT}\")")
    try:
        side_rule = SideRule(_require(data, "side_rule", str, source))
        primary = Group(_require(data, "primary_group", str, source))
    except ValueError as exc:
        raise CalibrationError(f"{source}: {exc}") from None
    cutoffs = []
    for index, item in enumerate(_require(data, "cutoffs", list, source)):
        where = f"{source}: cutoffs[{index}]"
        if not isinstance(item, dict):
            raise CalibrationError(f"{where}: must be an object")
        try:
            group = Group(_require(item, "group", str, where))
        except ValueError as exc:
            raise CalibrationError(f"{where}: {exc}") from None
        sex = _require(item, "sex", str, where)
        if sex not in ("F", "M"):
            raise CalibrationError(f"{where}: sex must be 'F' or 'M', got {sex!r}")
        value = float(_require(item, "smi_cutoff_kg_m2", (int, float), where))
        # CT SMI of one group by a side rule can be well below DXA SMI (gluteal muscles, mean of the sides:
        # ~0.3 kg/m2), so the lower bound only refuses zero and unit mistakes.
        if not 0.05 < value < 30:
            raise CalibrationError(f"{where}: smi_cutoff_kg_m2 {value} is not a plausible SMI in kg/m2")
        ci = item.get("auc_ci95")
        cutoffs.append(Cutoff(
            group, sex, value, item.get("n"), item.get("n_low_muscle_mass"), item.get("auc"),
            (float(ci[0]), float(ci[1])) if ci else None, item.get("sensitivity"), item.get("specificity"),
        ))
    if not cutoffs:
        raise CalibrationError(f"{source}: no cut-offs")
    keys = [(c.group, c.sex) for c in cutoffs]
    if len(set(keys)) != len(keys):
        raise CalibrationError(f"{source}: more than one cut-off for the same group and sex")
    known = {"format", "name", "side_rule", "primary_group", "cutoffs", "reference_standard", "created",
             "software_version", "synthetic"}
    return Calibration(
        name=str(_require(data, "name", str, source)),
        sha256=hashlib.sha256(raw).hexdigest(),
        side_rule=side_rule,
        primary_group=primary,
        cutoffs=tuple(cutoffs),
        reference_standard=str(data.get("reference_standard", "")),
        created=str(data.get("created", "")),
        software_version=str(data.get("software_version", "")),
        synthetic=bool(data.get("synthetic", False)),
        source_path=source,
        extra={k: v for k, v in data.items() if k not in known},
    )


def load_calibration(path: Path) -> Calibration:
    """Read a calibration file; raise `CalibrationError` naming the problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CalibrationError(f"calibration file {path} cannot be read: {exc.strerror}") from None
    return parse_calibration(raw, str(path))
