"""A SYNTHETIC validation cohort: phantom subjects, their ground-truth muscle masses and SYNTHETIC DXA values.

Subjects vary in sex, height, muscle scale, subcutaneous fat, age and fatty infiltration. Their ground-truth
group masses come from a coarse label map (fast, no CT) or, with ``with_ct``, from the full phantom's
ground_truth.json. DXA values are drawn from a documented statistical model - they are not measurements:

* DXA leg lean mass (both legs, kg) = 1.9 + 1.05 x phantom "all" muscle mass (both sides, kg, density
  1.04 g/cm3) + N(0, 0.6^2): DXA lean includes skin, tendons and non-muscle lean tissue of the legs, and the
  two methods disagree by roughly half a kilogram (Kim et al., Am J Clin Nutr 2002; Shen et al. 2004 for the
  CT/MRI-DXA relation);
* arm lean mass = 0.30 x leg lean mass x (1 + N(0, 0.08^2)) (women; 0.34 for men);
* appendicular lean mass ALM = legs + arms, DXA SMI = ALM / height^2.

With the default distributions an older-women cohort has DXA SMI ~5.7 +- 0.9 kg/m2 and ~35 % below the
AWGS 2019 / EWGSOP2 women's cut-off of 5.4-5.5 kg/m2, roughly the prevalence reported for older women with
hip CT. Every file says SYNTHETIC; the cohort.csv has a ``synthetic`` column that is always ``true``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sarcoscreen.inference.catalogue import CATALOGUE, GROUP_BOUNDS, Group, Kind
from sarcoscreen.inference.phantom.parameters import Fov, PhantomParameterError, PhantomParameters

__all__ = ["CohortResult", "CohortSubject", "make_cohort", "subject_parameters"]

COHORT_COLUMNS = ("subject_id", "synthetic", "sex", "height_m", "age_years", "dxa_leg_lean_mass_kg",
                  "dxa_appendicular_lean_mass_kg", "dxa_smi_kg_m2", "study_instance_uid")
_SIDES = ("left", "right", "both")

README = """SYNTHETIC COHORT - NOT PATIENT DATA

Made by `sarcoscreen phantom cohort`. Every subject is a digital phantom; every DXA value is SYNTHETIC, drawn
from a statistical model of the phantom's own muscle mass (see docs/phantom.md, "Synthetic DXA"):

  dxa_leg_lean_mass_kg = 1.9 + 1.05 * all-muscle mass (kg, both legs) + N(0, 0.6^2)
  arm lean mass        = {arm_fraction_f} (women) / {arm_fraction_m} (men) * leg lean * (1 + N(0, 0.08^2))
  dxa_appendicular_lean_mass_kg = legs + arms;  dxa_smi_kg_m2 = ALM / height^2

Files:
  cohort.csv  one row per subject: pseudonymous id, synthetic=true, sex, height, age, SYNTHETIC DXA values,
              and the Study Instance UID of the subject's CT when made with --with-ct.
  truth.csv   the phantoms' ground-truth muscle masses per group and side (grams, density 1.04 g/cm3) and
              the generating parameters. truth_source says whether they come from a coarse label map or
              from the written CT's ground_truth.json.
  subjects/   (with --with-ct) one phantom per subject: dicom/, labels.nii.gz, ground_truth.json.

Seed: {seed}. Subjects: {n}.
"""


@dataclass(frozen=True)
class CohortSubject:
    subject_id: str
    params: PhantomParameters
    group_mass_g: dict[str, float | None]
    """``"<group>_<side>"`` -> ground-truth mass (density 1.04) or None when not measurable."""
    truth_source: str
    dxa_leg_lean_kg: float
    dxa_alm_kg: float
    dxa_smi: float
    study_instance_uid: str = ""


@dataclass(frozen=True)
class CohortResult:
    out_dir: Path
    cohort_csv: Path
    truth_csv: Path
    readme: Path
    subjects: tuple[CohortSubject, ...]


def subject_parameters(rng: np.random.Generator, sex: str, seed: int, matrix: int,
                       slice_mm: float) -> PhantomParameters:
    """Draw one subject: older adults (60-90 years), heights and body composition typical of that age."""
    female = sex == "F"
    height = float(np.clip(rng.normal(1.56 if female else 1.69, 0.06 if female else 0.07), 1.40, 1.92))
    muscle = float(np.clip(rng.normal(0.95, 0.11), 0.62, 1.30))
    fat = float(np.clip(math.exp(rng.normal(math.log(15.0 if female else 11.0), 0.35)), 4.0, 45.0))
    age = int(rng.integers(60, 91))
    infiltration = float(np.clip(rng.beta(2.0, 6.0), 0.0, 1.0))
    return PhantomParameters(fov=Fov.HIP, sex=sex, height_m=round(height, 3), muscle_scale=round(muscle, 3),
                             fat_mm=round(fat, 1), slice_mm=slice_mm, matrix=matrix, noise_hu=12.0, seed=seed,
                             fatty_infiltration=round(infiltration, 3), age_years=age)


def _coarse_masses(params: PhantomParameters) -> dict[str, float | None]:
    """Group masses (g, 1.04 g/cm3) from a coarse label map: 96 x 96 pixels, every 8 mm. A landmark-bounded group
    counts its muscle in the slices between its landmarks (`ground_truth.bounded_slices`); None when the coarse
    grid does not hold them."""
    from sarcoscreen.inference.phantom import label_grid
    from sarcoscreen.inference.phantom.ground_truth import bounded_slices

    grid = label_grid(replace(params, matrix=96), z_step_mm=8.0)
    out: dict[str, float | None] = {}
    for group in Group:
        labels = grid.labels
        if group in GROUP_BOUNDS:
            slab = bounded_slices(group, grid.landmarks, grid.z_mm)
            if slab is None:
                for side in _SIDES:
                    out[f"{group.value}_{side}"] = None
                continue
            labels = labels[slab[0]:slab[1] + 1]
        counts = np.bincount(labels.ravel(), minlength=256)
        for side in _SIDES:
            members = [s for s in CATALOGUE.group_members(group, None if side == "both" else side)
                       if s.anatomy.kind is Kind.MUSCLE]
            out[f"{group.value}_{side}"] = float(sum(counts[s.label] for s in members) * grid.voxel_mm3 / 1000.0 * 1.04)
    return out


def _ct_masses(ground_truth: dict[str, Any]) -> dict[str, float | None]:
    return {f"{g['group']}_{g['side']}": g["mass_g"]["constant_1.04"] for g in ground_truth["groups"]}


def make_cohort(n: int, out_dir: Path | str, *, seed: int = 0, sex: str = "F", with_ct: bool = False,
                matrix: int = 128, slice_mm: float = 5.0,
                progress: Callable[[int, int], None] | None = None) -> CohortResult:
    """Write cohort.csv, truth.csv and README.txt (and each subject's CT with `with_ct`) into `out_dir`."""
    if not isinstance(n, int) or not 1 <= n <= 10000:
        raise PhantomParameterError(f"cohort size {n!r} must be an integer 1..10000")
    if sex not in ("F", "M", "both"):
        raise PhantomParameterError(f"sex {sex!r} must be F, M or both")
    # Validate the CT settings before any work.
    PhantomParameters(matrix=matrix, slice_mm=slice_mm)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 0xC0407])
    subjects: list[CohortSubject] = []
    for i in range(n):
        subject_sex = sex if sex != "both" else ("F" if rng.uniform() < 0.5 else "M")
        params = subject_parameters(rng, subject_sex, seed * 100003 + i, matrix, slice_mm)
        sid = f"SYN-{i + 1:04d}"
        params = replace(params, extra={"cohort_subject_id": sid})
        uid = ""
        if with_ct:
            from sarcoscreen.inference.phantom import make_phantom

            result = make_phantom(params, out / "subjects" / sid)
            masses = _ct_masses(result.ground_truth)
            source = f"ct ground truth ({matrix} matrix, {slice_mm:g} mm)"
            uid = result.ground_truth["series"]["study_instance_uid"]
        else:
            masses = _coarse_masses(params)
            source = "coarse label map (96 matrix, 8 mm)"
        all_kg = float(masses["all_both"] or 0.0) / 1000.0
        leg = 1.9 + 1.05 * all_kg + float(rng.normal(0.0, 0.6))
        arm_fraction = 0.30 if subject_sex == "F" else 0.34
        arms = arm_fraction * leg * (1.0 + float(rng.normal(0.0, 0.08)))
        alm = leg + arms
        subjects.append(CohortSubject(sid, params, masses, source, leg, alm, alm / params.height_m**2, uid))
        if progress is not None:
            progress(i + 1, n)

    cohort_csv = out / "cohort.csv"
    with cohort_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COHORT_COLUMNS)
        for s in subjects:
            w.writerow([s.subject_id, "true", s.params.sex, f"{s.params.height_m:.3f}", s.params.age_years,
                        f"{s.dxa_leg_lean_kg:.3f}", f"{s.dxa_alm_kg:.3f}", f"{s.dxa_smi:.3f}", s.study_instance_uid])
    truth_csv = out / "truth.csv"
    mass_columns = [f"{g.value}_{side}_mass_g" for g in Group for side in _SIDES]
    with truth_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subject_id", "synthetic", "sex", "height_m", "muscle_scale", "fat_mm", "fatty_infiltration",
                    "age_years", "seed", *mass_columns, "truth_source"])
        for s in subjects:
            p = s.params
            masses = [s.group_mass_g.get(c.removesuffix("_mass_g")) for c in mass_columns]
            w.writerow([s.subject_id, "true", p.sex, f"{p.height_m:.3f}", f"{p.muscle_scale:.3f}", f"{p.fat_mm:.1f}",
                        f"{p.fatty_infiltration:.3f}", p.age_years, p.seed,
                        *("" if m is None else f"{m:.1f}" for m in masses), s.truth_source])
    readme = out / "README.txt"
    readme.write_text(README.format(seed=seed, n=n, arm_fraction_f="0.30", arm_fraction_m="0.34"))
    return CohortResult(out, cohort_csv, truth_csv, readme, tuple(subjects))
