"""The gluteal anatomy of a label map, measured the same way on the phantom and on real manual labels.

What the weight-free engine's gluteal region (``inference/engines/threshold/regions.py``) was chosen on, so that the
phantom can be checked against the real anatomies it has to agree with:

* **How far the gluteus maximus reaches down**: its lowest slice below the femoral head top and below the ischial
  tuberosity.
* **Where the glutei begin**: gluteal muscle (maximus + medius + minimus) within 20 mm below the top of the iliac
  crest, and how far below the crest top the medius and the maximus begin.
* **Their angular layout**: in the axial plane around the femoral head centre (above it) or the femur's centre on
  each slice (below it), 0 deg lateral, +90 deg posterior, -90 deg anterior; per level band the 5th and 95th
  percentile of the gluteal voxels' angles and the fraction of them inside the engine's sector for that band, and
  how far round the iliac wing gluteus medius reaches above the acetabular roof.

Landmarks, per side, from the label map alone (the same rules for both kinds of map, after
``inference/labelled_ct.py``): iliac crest top = highest slice of the hip bone label; femoral head top = highest
slice of the femur label; femoral head centre = maximum of the 3-D distance transform of the femur label within
60 mm of its top; acetabular roof = the femoral head top (the phantom's roof lies 2 mm above it); ischial
tuberosity = lowest slice of the hip bone label posterior of the femoral head centre. A level ``z`` belongs to a
band when ``low < z <= high``.

Real labels: ``../shared/data/pelvic-annotation/Pelvic-Ref-*/label.mhd`` (1 pelvis, 2 femur, 5-7 glutei; sides
split at the x of the pelvis label's centre of mass). Phantom: a phantom folder's ``labels.nii.gz`` (catalogue
labels, right and left distinct).

``python -m sarcoscreen.inference.phantom.gluteal_profile [--real DIR] [--phantom DIR ...] [--sides both]`` prints
the figures of the table in ``docs/phantom.md`` ("Gluteal anatomy against real labels"); with ``--make`` it first
generates the default phantom (256 matrix, 3 mm slices) in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from sarcoscreen.inference.catalogue import CATALOGUE, Side

__all__ = [
    "BANDS",
    "AngularBand",
    "GlutealProfile",
    "LabelledAnatomy",
    "SideLandmarks",
    "load_annotation",
    "load_phantom",
    "profile",
    "side_landmarks",
    "table",
]

HEAD_SEARCH_MM = 60.0
"""The femoral head centre is looked for within this distance of the femur label's top."""
CREST_MARGIN_MM = 20.0

STRUCTURES = ("pelvis", "femur", "gluteus_maximus", "gluteus_medius", "gluteus_minimus")
_ANNOTATION_VALUES = {"pelvis": 1, "femur": 2, "gluteus_maximus": 5, "gluteus_medius": 6, "gluteus_minimus": 7}
_CATALOGUE_KEYS = {"pelvis": "hip_bone", "femur": "femur", "gluteus_maximus": "gluteus_maximus",
                   "gluteus_medius": "gluteus_medius", "gluteus_minimus": "gluteus_minimus"}
SIDES = (Side.RIGHT, Side.LEFT)
GLUTEI = ("gluteus_maximus", "gluteus_medius", "gluteus_minimus")


@dataclass(frozen=True)
class Band:
    """A level band between two landmark-relative levels, with the engine's sector for it (degrees)."""

    name: str
    sector: tuple[float, float] | None
    """``None``: no gluteal muscle is expected there."""


BANDS = (
    Band("crest top to 20 mm below", None),
    Band("20-45 mm below the crest", (0.0, 120.0)),
    Band("45 mm below the crest to the roof", (-60.0, 120.0)),
    Band("roof to head centre", (-30.0, 150.0)),
    Band("head centre to 25 mm below", (-40.0, 160.0)),
    Band("25 mm below the head centre to the ischial tuberosity", (10.0, 160.0)),
    Band("below the ischial tuberosity", (40.0, 150.0)),
)
"""The level bands of the engine's gluteal region (``regions.py``), top to bottom."""


@dataclass(frozen=True)
class SideLandmarks:
    """Levels (mm, patient z) and the head centre's in-plane position (mm, LPS) of one side."""

    crest_top: float
    head_top: float
    head_centre: float
    head_centre_xy: tuple[float, float]
    head_radius: float
    ischial_tuberosity: float

    @property
    def roof(self) -> float:
        return self.head_top

    def band_limits(self) -> list[tuple[float, float]]:
        """(low, high] of every band of `BANDS`, in patient z."""
        c, r, h, it = self.crest_top, self.roof, self.head_centre, self.ischial_tuberosity
        return [(c - CREST_MARGIN_MM, c), (c - 45.0, c - CREST_MARGIN_MM), (r, c - 45.0), (h, r), (h - 25.0, h),
                (it, h - 25.0), (-math.inf, it)]


class LabelledAnatomy:
    """A label map with the structures the profile needs, per side.

    `labels` is (slices, rows, columns); `z_mm`, `y_mm`, `x_mm` give each slice's, row's and column's patient
    coordinate (LPS: +x the patient's left, +y posterior, +z superior).
    """

    def __init__(self, name: str, labels: np.ndarray, z_mm: np.ndarray, y_mm: np.ndarray, x_mm: np.ndarray,
                 values: dict[tuple[str, Side], tuple[int, np.ndarray | None]]) -> None:
        self.name = name
        self.labels = labels
        self.z_mm = np.asarray(z_mm, np.float64)
        self.y_mm = np.asarray(y_mm, np.float64)
        self.x_mm = np.asarray(x_mm, np.float64)
        self._values = values
        """(structure, side) -> (label value, column mask of the side or None when the value is the side's own)."""
        self.spacing = (float(np.median(np.abs(np.diff(self.z_mm)))), float(abs(self.y_mm[1] - self.y_mm[0])),
                        float(abs(self.x_mm[1] - self.x_mm[0])))

    @property
    def voxel_mm3(self) -> float:
        return self.spacing[0] * self.spacing[1] * self.spacing[2]

    def mask(self, structure: str, side: Side) -> np.ndarray:
        value, columns = self._values[(structure, side)]
        found = self.labels == value
        if columns is not None:
            found &= columns[None, None, :]
        return found

    @staticmethod
    def lateral_sign(side: Side) -> float:
        """Lateral is -x on the right side, +x on the left (LPS)."""
        return -1.0 if side is Side.RIGHT else 1.0


def load_annotation(label_mhd: Path | str) -> LabelledAnatomy:
    """A manual label map of the pelvic annotation (``label.mhd``); sides split at the pelvis' centre of mass."""
    from sarcoscreen.inference.metaimage import read_metaimage

    path = Path(label_mhd)
    image = read_metaimage(path)
    labels = np.asarray(image.array)
    affine = image.affine
    expected = np.zeros((3, 3))
    expected[2, 0], expected[1, 1], expected[0, 2] = affine[2, 0], affine[1, 1], affine[0, 2]
    if not np.allclose(affine[:3, :3], expected) or affine[2, 0] <= 0:  # array axes (z, y, x) -> (x, y, z)
        raise ValueError(f"{path}: expected an axis-aligned label map with slices along +z")
    ks, js, iis = (np.arange(n) for n in labels.shape)
    z = affine[2, 0] * ks + affine[2, 3]
    y = affine[1, 1] * js + affine[1, 3]
    x = affine[0, 2] * iis + affine[0, 3]
    pelvis_columns = np.nonzero(labels == _ANNOTATION_VALUES["pelvis"])[2]
    midline = float(np.mean(x[pelvis_columns]))
    sides = {Side.RIGHT: x <= midline, Side.LEFT: x > midline}  # LPS: the patient's right has the smaller x
    values = {(s, side): (_ANNOTATION_VALUES[s], sides[side]) for s in STRUCTURES for side in SIDES}
    return LabelledAnatomy(path.parent.name, labels, z, y, x, values)


def load_phantom(phantom_dir: Path | str) -> LabelledAnatomy:
    """A phantom's ``labels.nii.gz`` (axes column, row, slice; RAS affine) as a labelled anatomy."""
    import nibabel as nib

    folder = Path(phantom_dir)
    image = nib.load(folder / "labels.nii.gz")
    data = np.asarray(image.dataobj)  # (column, row, slice)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine  # RAS -> LPS
    if not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3]))):
        raise ValueError(f"{folder}: expected an axis-aligned label map")
    labels = np.transpose(data, (2, 1, 0))
    order = np.argsort(affine[2, 2] * np.arange(labels.shape[0]))
    labels = labels[order]
    z = (affine[2, 2] * np.arange(data.shape[2]) + affine[2, 3])[order]
    y = affine[1, 1] * np.arange(data.shape[1]) + affine[1, 3]
    x = affine[0, 0] * np.arange(data.shape[0]) + affine[0, 3]
    values = {(s, side): (CATALOGUE.structure(_CATALOGUE_KEYS[s], side).label, None) for s in STRUCTURES
              for side in SIDES}
    name = folder.name
    gt = folder / "ground_truth.json"
    if gt.is_file():
        name = f"phantom ({json.loads(gt.read_text())['parameters'].get('sex', '?')})"
    return LabelledAnatomy(name, labels, z, y, x, values)


def side_landmarks(anatomy: LabelledAnatomy, side: Side) -> SideLandmarks:
    """The landmarks of one side, from its hip bone and femur labels (see the module docstring)."""
    z = anatomy.z_mm
    pelvis = anatomy.mask("pelvis", side)
    femur = anatomy.mask("femur", side)
    pelvis_k = np.nonzero(pelvis.any(axis=(1, 2)))[0]
    femur_k = np.nonzero(femur.any(axis=(1, 2)))[0]
    if not len(pelvis_k) or not len(femur_k):
        raise ValueError(f"{anatomy.name}: no hip bone or femur label on the {side.value} side")
    crest = float(z[pelvis_k].max())
    head_top = float(z[femur_k].max())
    near = (z >= head_top - HEAD_SEARCH_MM - 1e-6)
    ks = np.nonzero(near & femur.any(axis=(1, 2)))[0]
    k0, k1 = int(ks.min()), int(ks.max()) + 1
    rows = np.nonzero(femur[k0:k1].any(axis=(0, 2)))[0]
    cols = np.nonzero(femur[k0:k1].any(axis=(0, 1)))[0]
    box = femur[k0:k1, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    distance = ndimage.distance_transform_edt(np.pad(box, 1), sampling=anatomy.spacing)
    k, j, i = (int(v) - 1 for v in np.unravel_index(int(np.argmax(distance)), distance.shape))
    centre_xy = (float(anatomy.x_mm[cols.min() + i]), float(anatomy.y_mm[rows.min() + j]))
    head_centre = float(z[k0 + k])
    # Ischial tuberosity: the lowest hip bone posterior of the head centre.
    posterior_rows = (anatomy.y_mm > centre_xy[1])[None, :, None]
    behind = np.nonzero((pelvis & posterior_rows).any(axis=(1, 2)))[0]
    ischium = float(z[behind].min())
    return SideLandmarks(crest, head_top, head_centre, centre_xy, float(distance.max()), ischium)


@dataclass(frozen=True)
class AngularBand:
    """The gluteal voxels of one side in one level band."""

    band: Band
    volume_cm3: float
    p05_deg: float | None
    p95_deg: float | None
    in_sector: float | None
    """Fraction of the band's gluteal volume inside the engine's sector; ``None`` without a sector or muscle."""


@dataclass(frozen=True)
class GlutealProfile:
    """The three properties of one side of one anatomy."""

    anatomy: str
    side: Side
    landmarks: SideLandmarks
    maximus_bottom_below_head_top_mm: float
    maximus_bottom_below_ischium_mm: float
    maximus_top_below_crest_mm: float
    medius_top_below_crest_mm: float
    gluteal_near_crest_cm3: float
    """Gluteal muscle (maximus + medius + minimus) within 20 mm below the crest top."""
    bands: tuple[AngularBand, ...]
    medius_above_roof_deg: tuple[float, float] | None
    """5th and 95th percentile of gluteus medius' angles above the acetabular roof (how far round the wing it
    reaches, forwards and backwards)."""
    gluteal_cm3: float


def _angles(anatomy: LabelledAnatomy, side: Side, k: int, mask2d: np.ndarray, centre: tuple[float, float]
            ) -> np.ndarray:
    """Angles (degrees, -120..240: medial-anterior wraps to beyond 180) of the mask's pixels around `centre`."""
    j, i = np.nonzero(mask2d)
    lateral = anatomy.lateral_sign(side) * (anatomy.x_mm[i] - centre[0])
    posterior = anatomy.y_mm[j] - centre[1]
    a = np.degrees(np.arctan2(posterior, lateral))
    return np.where(a < -120.0, a + 360.0, a)


def profile(anatomy: LabelledAnatomy, side: Side) -> GlutealProfile:
    """Measure the three properties on one side of `anatomy`."""
    lm = side_landmarks(anatomy, side)
    z = anatomy.z_mm
    masks = {name: anatomy.mask(name, side) for name in GLUTEI}
    gluteal = masks["gluteus_maximus"] | masks["gluteus_medius"] | masks["gluteus_minimus"]
    femur = anatomy.mask("femur", side)
    per_slice = gluteal.sum(axis=(1, 2))
    voxel_cm3 = anatomy.voxel_mm3 / 1000.0

    def levels(mask: np.ndarray) -> np.ndarray:
        return z[np.nonzero(mask.any(axis=(1, 2)))[0]]

    maximus = levels(masks["gluteus_maximus"])
    medius = levels(masks["gluteus_medius"])
    near_crest = float(per_slice[(z > lm.crest_top - CREST_MARGIN_MM - 1e-6) & (z <= lm.crest_top + 1e-6)].sum())

    bands = []
    for band, (low, high) in zip(BANDS, lm.band_limits(), strict=True):
        ks = np.nonzero((z > low + 1e-6) & (z <= high + 1e-6) & (per_slice > 0))[0]
        angles = []
        for k in ks:
            if z[k] > lm.head_centre:
                centre = lm.head_centre_xy
            else:
                j, i = np.nonzero(femur[k])
                if not len(j):
                    continue
                centre = (float(anatomy.x_mm[i].mean()), float(anatomy.y_mm[j].mean()))
            angles.append(_angles(anatomy, side, int(k), gluteal[k], centre))
        values = np.concatenate(angles) if angles else np.zeros(0)
        volume = float(per_slice[ks].sum()) * voxel_cm3
        if len(values):
            p05, p95 = (float(v) for v in np.percentile(values, [5.0, 95.0]))
            inside = None if band.sector is None else float(np.mean((values >= band.sector[0])
                                                                    & (values <= band.sector[1])))
        else:
            p05 = p95 = inside = None
        bands.append(AngularBand(band, volume, p05, p95, inside))
    medius_angles = [_angles(anatomy, side, int(k), masks["gluteus_medius"][k], lm.head_centre_xy)
                     for k in np.nonzero(z > lm.roof + 1e-6)[0] if masks["gluteus_medius"][k].any()]
    medius_above_roof = None
    if medius_angles:
        p05, p95 = np.percentile(np.concatenate(medius_angles), [5.0, 95.0])
        medius_above_roof = (float(p05), float(p95))
    return GlutealProfile(
        anatomy.name, side, lm,
        maximus_bottom_below_head_top_mm=lm.head_top - float(maximus.min()),
        maximus_bottom_below_ischium_mm=lm.ischial_tuberosity - float(maximus.min()),
        maximus_top_below_crest_mm=lm.crest_top - float(maximus.max()),
        medius_top_below_crest_mm=lm.crest_top - float(medius.max()),
        gluteal_near_crest_cm3=near_crest * voxel_cm3,
        bands=tuple(bands),
        medius_above_roof_deg=medius_above_roof,
        gluteal_cm3=float(per_slice.sum()) * voxel_cm3,
    )


def _fmt(value: float | None, pattern: str = "{:.0f}") -> str:
    return "-" if value is None else pattern.format(value)


def table(profiles: Sequence[GlutealProfile]) -> str:
    """A Markdown table: one column per anatomy and side, one row per property."""
    head = "| property | " + " | ".join(f"{p.anatomy} {p.side.value[0].upper()}" for p in profiles) + " |"
    rule = "| --- |" + " --- |" * len(profiles)
    rows = [
        ("maximus bottom below head top (mm)", [_fmt(p.maximus_bottom_below_head_top_mm) for p in profiles]),
        ("maximus bottom below ischial tuberosity (mm)", [_fmt(p.maximus_bottom_below_ischium_mm)
                                                          for p in profiles]),
        ("ischial tuberosity below head top (mm)", [_fmt(p.landmarks.head_top - p.landmarks.ischial_tuberosity)
                                                    for p in profiles]),
        ("gluteal within 20 mm below crest top (cm3)", [_fmt(p.gluteal_near_crest_cm3, "{:.1f}") for p in profiles]),
        ("medius top below crest top (mm)", [_fmt(p.medius_top_below_crest_mm) for p in profiles]),
        ("maximus top below crest top (mm)", [_fmt(p.maximus_top_below_crest_mm) for p in profiles]),
        ("crest top above head top (mm)", [_fmt(p.landmarks.crest_top - p.landmarks.head_top) for p in profiles]),
        ("gluteal volume (cm3)", [_fmt(p.gluteal_cm3) for p in profiles]),
    ]
    for n, band in enumerate(BANDS[1:], start=1):
        sector = f"{band.sector[0]:g}..{band.sector[1]:g}" if band.sector else ""
        cells = []
        for p in profiles:
            b = p.bands[n]
            cells.append("-" if b.p05_deg is None else
                         f"{b.p05_deg:.0f}..{b.p95_deg:.0f} ({100 * (b.in_sector or 0.0):.0f} %)")
        rows.append((f"{band.name}: angles p5..p95 (in {sector})", cells))
    rows.append(("gluteus medius above the roof: angles p5..p95",
                 ["-" if p.medius_above_roof_deg is None else "{:.0f}..{:.0f}".format(*p.medius_above_roof_deg)
                  for p in profiles]))
    return "\n".join([head, rule] + [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", type=Path, default=None,
                        help="the pelvic-annotation folder (Pelvic-Ref-*/label.mhd)")
    parser.add_argument("--phantom", type=Path, action="append", default=[], help="a phantom folder")
    parser.add_argument("--make", action="store_true",
                        help="generate the default phantom (matrix 256, 3 mm slices) in a temporary folder")
    parser.add_argument("--sides", choices=("left", "right", "both"), default="left")
    args = parser.parse_args(argv)
    sides = [Side.RIGHT, Side.LEFT] if args.sides == "both" else [Side(args.sides)]
    anatomies: list[LabelledAnatomy] = []
    if args.real is not None:
        anatomies.extend(load_annotation(p) for p in sorted(args.real.glob("*/label.mhd")))
    anatomies.extend(load_phantom(p) for p in args.phantom)
    with tempfile.TemporaryDirectory() as tmp:
        if args.make:
            from sarcoscreen.inference.phantom import PhantomParameters, make_phantom

            make_phantom(PhantomParameters(matrix=256, slice_mm=3.0), tmp)
            anatomies.append(load_phantom(tmp))
            anatomies[-1].name = "phantom"
        profiles = [profile(a, side) for a in anatomies for side in sides]
    print(table(profiles))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
