"""The public training data of the shipped model: simulated CT from real label maps, plus the real labelled CT.

``build_public_dataset`` writes a data folder that ``sarcoscreen train`` reads (``dataset.json`` layout, see
`datasets`):

* for every annotation folder (``pelvic-annotation/Pelvic-Ref-NNN``: manual per-voxel labels of the 19 hip and
  thigh muscles and the bones, MIT licence) and every seed, one CT series simulated by the realistic simulator
  (`sarcoscreen.inference.phantom.realistic`), written as ``image.nii`` (int16 HU) + ``labels.nii.gz`` (the
  annotation split left/right in catalogue values). Each seed draws its own protocol - pixel size 0.7-1.0 mm,
  slice thickness 3-5 mm (the label maps are 3 mm, so thinner slices would only interpolate), noise x0.7-1.8,
  contrast in 3 of 10, a metal hip in 1 of 10 - and, for 4 of 5 seeds, SynthSeg-style domain randomisation
  (`randomise.py`), so that the network learns shapes rather than one scanner's numbers;
* optionally real CT series with their annotation (``pelvic-ref-ct/Pelvic-Ref-002``: the one labelled real CT)
  as DICOM folder + ``labels.nii.gz`` made from the annotation on the series' own grid.

Tissue values: ``tissue="calibrated"`` uses the simulator's tissue model as measured on the real 002 and 003
series (per-muscle fat fractions from 002's labelled muscles). For an honest sim-to-real test on 002,
``tissue="generic"`` replaces 002's per-muscle values by one assumed muscle median (`GENERIC_MUSCLE_HU`) for every
muscle, randomised per muscle as usual; the global constants (fat HU, noise, bone and compartment profiles) stay
those measured on 002 and 003 (see `tissue_model`), which the notes of the validation state.

Run as ``python -m sarcoscreen.inference.training.public_data --out DIR ...`` (``--help``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from sarcoscreen.inference.phantom.parameters import MetalHip, PhantomParameterError
from sarcoscreen.inference.phantom.realistic import tissue_model as tm
from sarcoscreen.inference.phantom.realistic.parameters import Protocol, SimulationParameters
from sarcoscreen.inference.phantom.realistic.simulate import simulate_series
from sarcoscreen.inference.phantom.realistic.source import AnnotationSource, catalogue_labels, read_annotation

__all__ = [
    "ANNOTATION_LICENCE",
    "ANNOTATION_PROVENANCE",
    "CT_LICENCE",
    "CT_PROVENANCE",
    "GENERIC_MUSCLE_HU",
    "INTENDED_USE",
    "build_public_dataset",
    "draw_parameters",
    "write_annotation_labels",
]

INTENDED_USE = "research; not a medical device"
ANNOTATION_PROVENANCE = ("manual per-voxel muscle and bone labels of the TCIA Pelvic Reference Data cases "
                         "(github.com/yuta-hi/pelvic-annonation, by the group that published the Bayesian U-Net "
                         "muscle segmentation)")
ANNOTATION_LICENCE = "annotations: MIT licence (yuta-hi/pelvic-annonation)"
CT_PROVENANCE = ("CT: Yorke et al., Pelvic Reference Data, The Cancer Imaging Archive, 2019, "
                 "DOI 10.7937/TCIA.2019.woskq5oo")
CT_LICENCE = "CT: The Cancer Imaging Archive's terms for the Pelvic Reference Data collection (cite the DOI)"
GENERIC_MUSCLE_HU = 35.0
"""Assumed median HU of every muscle for ``tissue="generic"``: mid-range of the 30-50 HU usually cited for
normal skeletal muscle on unenhanced CT (Aubrey et al., Acta Physiol 2014), not measured on any case here."""

Log = Callable[[str], None]


@dataclass(frozen=True)
class RealCase:
    """A real CT series (a folder of DICOM files) and the annotation folder that labels it voxel for voxel."""

    name: str
    ct_dir: Path
    annotation_dir: Path


def draw_parameters(seed: int, tissue: str = "calibrated") -> SimulationParameters:
    """The protocol and options of one simulated training series, all drawn from `seed`."""
    rng = np.random.default_rng([seed, 0x7A1])
    thickness = float(rng.uniform(3.0, 5.0))
    protocol = Protocol(pixel_mm=float(rng.uniform(0.7, 1.0)), slice_mm=3.0, thickness_mm=thickness,
                        noise_scale=float(rng.uniform(0.7, 1.8)), contrast=bool(rng.random() < 0.3))
    metal = MetalHip.NONE
    if rng.random() < 0.1:
        metal = MetalHip(str(rng.choice([MetalHip.LEFT.value, MetalHip.RIGHT.value, MetalHip.BOTH.value])))
    infiltration = None
    if tissue == "generic":
        infiltration = {label: tm.muscle_fat_fraction(GENERIC_MUSCLE_HU) for label in range(5, 29)}
    elif tissue != "calibrated":
        raise ValueError(f"tissue {tissue!r} must be 'calibrated' or 'generic'")
    return SimulationParameters(protocol=protocol, seed=seed, metal_hip=metal, fatty_infiltration=infiltration,
                                infiltration_scale=float(rng.uniform(0.6, 1.5)), randomise=bool(rng.random() < 0.8))


def _lps_to_nifti(labels_or_hu: np.ndarray, origin: Sequence[float], spacing: tuple[float, float, float]
                  ) -> nib.Nifti1Image:
    """A (slice, row, column) LPS array with identity directions as a NIfTI image (RAS affine)."""
    sz, sy, sx = spacing
    lps = np.eye(4)
    lps[:3, 0] = (sx, 0.0, 0.0)
    lps[:3, 1] = (0.0, sy, 0.0)
    lps[:3, 2] = (0.0, 0.0, sz)
    lps[:3, 3] = origin
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    image = nib.Nifti1Image(np.ascontiguousarray(labels_or_hu.transpose(2, 1, 0)), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    return image


def write_annotation_labels(source: AnnotationSource, out: Path) -> Path:
    """The annotation split left/right in catalogue values as ``labels.nii.gz`` on the annotation's own grid."""
    labels = catalogue_labels(source.labels, source.left)
    out.parent.mkdir(parents=True, exist_ok=True)
    nib.save(_lps_to_nifti(labels, source.origin, source.spacing), out)
    return out


def _simulated_case(source: AnnotationSource, seed: int, tissue: str, folder: Path) -> dict[str, Any]:
    params = draw_parameters(seed, tissue)
    series = simulate_series(source, params)
    folder.mkdir(parents=True, exist_ok=True)
    origin = (float(series.x_mm[0]), float(series.y_mm[0]), float(series.z_mm[0]))
    spacing = (params.protocol.slice_mm, series.pixel_mm, series.pixel_mm)
    hu = np.clip(np.rint(series.hu), -1024, 3071).astype(np.int16)
    nib.save(_lps_to_nifti(hu, origin, spacing), folder / "image.nii")
    nib.save(_lps_to_nifti(series.labels, origin, spacing), folder / "labels.nii.gz")
    return {"parameters": params.to_dict(), "slices": int(hu.shape[0])}


def build_public_dataset(out: Path | str, annotations: Sequence[Path | str], seeds: Sequence[int], *,
                         real: Sequence[RealCase] = (), validation: Sequence[str] = (), tissue: str = "calibrated",
                         description: str = "", log: Log = print) -> Path:
    """Write the data folder `out` (see the module docstring) and return its ``dataset.json``.

    Existing case folders with a matching ``case.json`` are kept (the build resumes); `validation` names the
    cases that ``train`` validates on instead of training on."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cases: list[dict[str, Any]] = []
    subjects: set[str] = set()
    simulated: list[str] = []
    for annotation in annotations:
        source = read_annotation(annotation)
        subjects.add(source.name)
        simulated.append(source.name)
        for seed in seeds:
            name = f"{source.name}-sim{seed:03d}"
            folder = out / name
            record = folder / "case.json"
            key = {"annotation": source.name, "seed": seed, "tissue": tissue}
            if record.is_file() and json.loads(record.read_text()).get("key") == key:
                info = json.loads(record.read_text())
            else:
                started = time.perf_counter()
                info = {"key": key, **_simulated_case(source, seed, tissue, folder)}
                record.write_text(json.dumps(info, indent=2) + "\n")
                log(f"{name}: {info['slices']} slices simulated in {time.perf_counter() - started:.0f} s")
            cases.append({"name": name, "image": f"{name}/image.nii", "labels": f"{name}/labels.nii.gz",
                          "simulated_from": source.name, "parameters": info["parameters"]})
    for case in real:
        source = read_annotation(case.annotation_dir)
        subjects.add(source.name)
        labels = write_annotation_labels(source, out / case.name / "labels.nii.gz")
        cases.append({"name": case.name, "image": str(Path(case.ct_dir).resolve()),
                      "labels": str(labels.relative_to(out)), "real_ct": True})
    wanted = set(validation)
    for entry in cases:
        if entry["name"] in wanted:
            entry["split"] = "validation"
    unknown = wanted - {c["name"] for c in cases}
    if unknown:
        raise ValueError(f"validation cases {sorted(unknown)} are not in the data set")
    provenance = [ANNOTATION_PROVENANCE, CT_PROVENANCE]
    licences = [ANNOTATION_LICENCE, CT_LICENCE]
    listing = {
        "description": description or _describe(simulated, len(seeds), tissue, [c.name for c in real]),
        "synthetic": False,
        "subjects": len(subjects),
        "provenance": provenance,
        "licences": licences,
        "intended_use": INTENDED_USE,
        "tissue": tissue,
        "cases": cases,
    }
    path = out / "dataset.json"
    path.write_text(json.dumps(listing, indent=2) + "\n")
    return path


def _describe(simulated: Sequence[str], seeds: int, tissue: str, real: Sequence[str]) -> str:
    parts = []
    if simulated:
        parts.append(f"{seeds} CT series per label map simulated by sarcoscreen's realistic simulator from the manual "
                     f"label maps of {', '.join(simulated)} (tissue values {tissue})")
    if real:
        parts.append(f"the real labelled CT {', '.join(real)}")
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sarcoscreen.inference.training.public_data",
                                     description="Write the public training data folder of the shipped model.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--annotation", type=Path, action="append", default=[], metavar="DIR",
                        help="An annotation folder (label.mhd + mask.mhd); repeat for each subject.")
    parser.add_argument("--seeds", type=int, default=8, help="Simulated series per subject (seeds 0..N-1).")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--real", nargs=3, action="append", default=[], metavar=("NAME", "CT_DIR", "ANNOTATION"),
                        help="A real CT series and the annotation that labels it; repeatable.")
    parser.add_argument("--validation", action="append", default=[], metavar="CASE",
                        help="A case name to validate on (not trained on); repeatable.")
    parser.add_argument("--tissue", choices=("calibrated", "generic"), default="calibrated")
    args = parser.parse_args(argv)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    try:
        path = build_public_dataset(args.out, args.annotation, seeds,
                                    real=[RealCase(n, Path(c), Path(a)) for n, c, a in args.real],
                                    validation=args.validation, tissue=args.tissue)
    except (PhantomParameterError, ValueError) as exc:
        print(f"public_data: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"public_data: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"data set written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
