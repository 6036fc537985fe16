"""Training and evaluation data: image/label pairs as NIfTI, or DICOM series with DICOM-SEG or NIfTI labels.

A data folder ``DIR`` is read in one of three ways (first match wins):

1. ``DIR/dataset.json`` lists the cases explicitly::

       {"description": "...", "synthetic": false, "label_mapping": "mapping.json",
        "cases": [{"name": "case01", "image": "case01/ct.nii.gz", "labels": "case01/muscles.nii.gz"}, ...]}

   ``image`` is a NIfTI file or a folder of one DICOM CT series; ``labels`` a NIfTI label map or a DICOM-SEG file.
   A case with ``"split": "validation"`` is a validation case; when any case says so, the listing's split is used
   instead of a random one. Optional provenance entries (``subjects``, ``provenance``, ``licences``,
   ``intended_use``) are copied into the bundle's manifest.
2. nnU-Net layout: ``DIR/imagesTr/NAME_0000.nii.gz`` with ``DIR/labelsTr/NAME.nii.gz``.
3. One sub-folder per case holding an image (``image.nii.gz``, ``ct.nii.gz``, ``image.nii`` or a folder
   ``dicom/``) and labels (``labels.nii.gz``, ``label.nii.gz``, ``segmentation.nii.gz``, ``*.nii`` of those, or a
   DICOM-SEG ``seg.dcm``). The phantom's output folders (``dicom/`` + ``labels.nii.gz``) are such cases.

A case is *synthetic* when its folder holds a phantom's ``ground_truth.json`` with ``"synthetic": true`` or
``dataset.json`` says so; the bundle's manifest records it and the engine then warns that the bundle is for testing
only.

Labels become catalogue label values through a `LabelMapping` (a JSON file, see `LabelMapping.read`); without
one, NIfTI values must already be catalogue label values and DICOM-SEG segments are matched by their Tracking ID
(a catalogue key, as sarcoscreen's own SEGs have) or their label (a catalogue structure's name or key).

Every case is loaded as a `Volume` (NIfTI images through `volume_from_nifti`) with a label map on the volume's
own grid, so training sees exactly the orientation handling and resampling of inference.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from sarcoscreen.inference.catalogue import CATALOGUE, UnknownStructureError
from sarcoscreen.inference.engines.base import EngineError
from sarcoscreen.inference.engines.labelmap import align_to_volume
from sarcoscreen.inference.volume import SeriesInfo, SliceRef, Volume

__all__ = [
    "Case",
    "DatasetError",
    "LabelMapping",
    "find_cases",
    "load_case",
    "volume_from_nifti",
]

_IMAGE_NAMES = ("image.nii.gz", "ct.nii.gz", "image.nii", "ct.nii")
_LABEL_NAMES = ("labels.nii.gz", "label.nii.gz", "segmentation.nii.gz", "labels.nii", "label.nii",
                "segmentation.nii", "seg.dcm")
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


class DatasetError(Exception):
    """A data folder, case or label mapping that cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class Case:
    name: str
    image: Path
    """A NIfTI file or a folder with one DICOM CT series."""
    labels: Path
    """A NIfTI label map or a DICOM-SEG file."""
    synthetic: bool = False
    validation: bool = False
    """``dataset.json`` put the case in the validation set (``"split": "validation"``)."""


@dataclass(frozen=True)
class LabelMapping:
    """From a data set's label values (NIfTI) or segment names (DICOM-SEG) to catalogue label values.

    File format (JSON)::

        {"description": "TotalSegmentator-style labels -> sarcoscreen",
         "values": {"1": "gluteus_maximus_right", "2": "gluteus_maximus_left", "7": "background"},
         "segments": {"Left gluteus maximus": "gluteus_maximus_left"},
         "unmapped": "error"}

    Targets are catalogue structure keys or ``"background"`` (also ``null``). ``unmapped``: ``"error"`` (the
    default: a value or segment not listed refuses the case, naming it) or ``"background"``.
    """

    values: dict[int, int] = field(default_factory=dict)
    segments: dict[str, int] = field(default_factory=dict)
    unmapped_background: bool = False
    source: str | None = None
    description: str = ""

    @classmethod
    def read(cls, path: Path | str) -> LabelMapping:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"cannot read label mapping {path}: {exc}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "label mapping") -> LabelMapping:
        if not isinstance(data, dict):
            raise DatasetError(f"label mapping {source} must be a JSON object")

        def target(name: Any, what: str) -> int:
            if name is None or name == "background":
                return 0
            try:
                return CATALOGUE.by_key(str(name)).label
            except UnknownStructureError:
                raise DatasetError(f"label mapping {source}: {what} maps to {name!r}, which is not a catalogue "
                                   "structure key (e.g. gluteus_maximus_left) nor 'background'") from None

        values: dict[int, int] = {}
        for key, name in dict(data.get("values", {})).items():
            try:
                value = int(key)
            except ValueError:
                raise DatasetError(f"label mapping {source}: value {key!r} is not an integer") from None
            values[value] = target(name, f"value {value}")
        segments = {str(k): target(v, f"segment {k!r}") for k, v in dict(data.get("segments", {})).items()}
        unmapped = data.get("unmapped", "error")
        if unmapped not in ("error", "background"):
            raise DatasetError(f"label mapping {source}: unmapped must be 'error' or 'background', got {unmapped!r}")
        return cls(values, segments, unmapped == "background", source, str(data.get("description", "")))

    def targets(self) -> set[int]:
        """Catalogue label values this mapping can produce (background excluded)."""
        return {v for v in (*self.values.values(), *self.segments.values()) if v}

    def map_values(self, raw: np.ndarray, case: str) -> np.ndarray:
        """A label map of data-set values -> uint8 catalogue label values."""
        values = np.unique(raw)
        if values.size and (values.min() < 0 or not np.array_equal(values, np.round(values))):
            raise DatasetError(f"case {case}: the label map holds negative or non-integer values")
        lut: dict[int, int] = {}
        for value in (int(v) for v in values):
            if value in self.values:
                lut[value] = self.values[value]
            elif value == 0:
                lut[value] = 0
            elif self.source is None:
                try:
                    lut[value] = CATALOGUE.by_label(value).label
                except UnknownStructureError:
                    raise DatasetError(f"case {case}: label value {value} is not a catalogue label; give a label "
                                       "mapping file (--label-map) from the data set's values to catalogue keys") \
                        from None
            elif self.unmapped_background:
                lut[value] = 0
            else:
                raise DatasetError(f"case {case}: label value {value} is not in the label mapping {self.source}")
        table = np.zeros(max(lut, default=0) + 1, np.uint8)
        for value, label in lut.items():
            table[value] = label
        return table[raw if np.issubdtype(raw.dtype, np.integer) else raw.astype(np.int64)]

    def map_segment(self, label: str, tracking_id: str | None, case: str) -> int:
        """The catalogue label value of a DICOM-SEG segment."""
        for name in (label, tracking_id):
            if name is not None and name in self.segments:
                return self.segments[name]
        if self.source is None or not self.segments:
            for name in (tracking_id, label):
                if not name:
                    continue
                structure = next((s for s in CATALOGUE if name in (s.key, s.name)), None)
                if structure is not None:
                    return structure.label
        if self.unmapped_background:
            return 0
        raise DatasetError(f"case {case}: DICOM-SEG segment {label!r} (tracking id {tracking_id!r}) is not a "
                           "catalogue structure; map it in a label mapping file (--label-map, 'segments')")


def _is_synthetic(folder: Path) -> bool:
    truth = folder / "ground_truth.json"
    if not truth.is_file():
        return False
    try:
        return bool(json.loads(truth.read_text(encoding="utf-8")).get("synthetic", False))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def _first(folder: Path, names: Iterable[str]) -> Path | None:
    return next((folder / n for n in names if (folder / n).exists()), None)


def find_cases(data_dir: Path | str) -> tuple[list[Case], dict[str, Any]]:
    """The cases of a data folder and its ``dataset.json`` (empty when there is none)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"data folder {root} not found")
    listing = root / "dataset.json"
    if listing.is_file():
        try:
            meta = json.loads(listing.read_text(encoding="utf-8"))
            synthetic = bool(meta.get("synthetic", False))
            cases = [Case(str(c.get("name") or Path(c["image"]).stem), root / c["image"], root / c["labels"],
                          synthetic or _is_synthetic((root / c["image"]).parent),
                          c.get("split", "training") == "validation") for c in meta["cases"]]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DatasetError(f"cannot read {listing}: {exc}") from None
        for case in cases:
            for path in (case.image, case.labels):
                if not path.exists():
                    raise DatasetError(f"{listing}: case {case.name}: {path} not found")
    elif (root / "imagesTr").is_dir() and (root / "labelsTr").is_dir():
        meta = {}
        cases = []
        for image in sorted((root / "imagesTr").glob("*_0000.nii*")):
            name = image.name.split("_0000.nii")[0]
            labels = _first(root / "labelsTr", (f"{name}.nii.gz", f"{name}.nii"))
            if labels is None:
                raise DatasetError(f"{image} has no label map {name}.nii.gz in {root / 'labelsTr'}")
            cases.append(Case(name, image, labels))
    else:
        meta = {}
        cases = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            image = _first(folder, _IMAGE_NAMES)
            if image is None and (folder / "dicom").is_dir():
                image = folder / "dicom"
            labels = _first(folder, _LABEL_NAMES)
            if image is not None and labels is not None:
                cases.append(Case(folder.name, image, labels, _is_synthetic(folder)))
    if not cases:
        raise DatasetError(f"no cases found in {root}: expected dataset.json, imagesTr/ + labelsTr/, or one "
                           "folder per case with image.nii.gz (or dicom/) and labels.nii.gz (or seg.dcm)")
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise DatasetError(f"case names in {root} are not unique")
    return cases, meta


def volume_from_nifti(path: Path | str) -> Volume:
    """A NIfTI CT image as a `Volume` (values taken as HU; LPS geometry from the RAS affine)."""
    path = Path(path)
    try:
        image = nib.as_closest_canonical(nib.load(path))
        data = np.asarray(image.dataobj)
    except (OSError, nib.filebasedimages.ImageFileError, ValueError) as exc:
        raise DatasetError(f"cannot read NIfTI image {path}: {exc}") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DatasetError(f"NIfTI image {path} has {data.ndim} dimensions; a 3-D CT is needed")
    affine = image.affine
    # Volume axes: k along +z (superior), i posterior (-y of RAS), j patient left (-x of RAS).
    hu = data[::-1, ::-1, :].transpose(2, 1, 0)
    if np.issubdtype(hu.dtype, np.integer) and hu.min() >= -32768 and hu.max() <= 32767:
        hu = hu.astype(np.int16)
    else:
        hu = hu.astype(np.float32)
    row = _RAS_TO_LPS @ -affine[:3, 0]
    col = _RAS_TO_LPS @ -affine[:3, 1]
    slice_step = _RAS_TO_LPS @ affine[:3, 2]
    spacing = (float(np.linalg.norm(slice_step)), float(np.linalg.norm(col)), float(np.linalg.norm(row)))
    row_dir, col_dir = row / spacing[2], col / spacing[1]
    normal = np.cross(row_dir, col_dir)
    if abs(float(np.dot(normal, slice_step / spacing[0]))) < 0.999:
        raise DatasetError(f"NIfTI image {path} has a sheared grid (slices not perpendicular to the image plane)")
    nx, ny, nz = data.shape
    first = _RAS_TO_LPS @ (affine @ np.array([nx - 1, ny - 1, 0, 1.0]))[:3]
    positions = first[None, :] + np.arange(nz)[:, None] * slice_step[None, :]
    return Volume(
        hu=np.ascontiguousarray(hu), spacing=spacing,
        row_direction=tuple(float(v) for v in row_dir), column_direction=tuple(float(v) for v in col_dir),
        positions=positions, slices=tuple(SliceRef("", "") for _ in range(nz)),
        info=SeriesInfo("", "", ""), warnings=(f"read from NIfTI {path.name}",),
    )


def _labels_from_nifti(path: Path, volume: Volume, mapping: LabelMapping, case: str) -> np.ndarray:
    try:
        image = nib.load(path)
        raw = np.asarray(image.dataobj)
    except (OSError, nib.filebasedimages.ImageFileError) as exc:
        raise DatasetError(f"case {case}: cannot read label map {path}: {exc}") from None
    if raw.ndim == 4 and raw.shape[3] == 1:
        raw = raw[..., 0]
    try:
        aligned = align_to_volume(raw, image.affine, volume)
    except EngineError as exc:
        raise DatasetError(f"case {case}: label map {path.name} does not match the image: {exc}") from None
    return mapping.map_values(aligned, case)


def _labels_from_seg(path: Path, volume: Volume, mapping: LabelMapping, case: str) -> np.ndarray:
    import highdicom as hd

    try:
        seg = hd.seg.segread(path)
    except Exception as exc:
        raise DatasetError(f"case {case}: cannot read DICOM-SEG {path}: {exc}") from None
    uids = [ref.sop_instance_uid for ref in volume.slices]
    if not all(uids):
        raise DatasetError(f"case {case}: a DICOM-SEG needs a DICOM image series (SOP Instance UIDs)")
    numbers, labels = [], []
    for item in seg.SegmentSequence:
        tracking = str(item.TrackingID) if "TrackingID" in item else None
        value = mapping.map_segment(str(item.SegmentLabel), tracking, case)
        numbers.append(int(item.SegmentNumber))
        labels.append(value)
    lut = np.zeros(max(numbers) + 1, np.uint8)
    lut[numbers] = labels
    try:
        pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True, relabel=False,
                                                   assert_missing_frames_are_empty=True)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise DatasetError(f"case {case}: DICOM-SEG {path.name} does not match the image series: {exc}") from None
    if pixels.shape != volume.shape:
        raise DatasetError(f"case {case}: DICOM-SEG {path.name} has shape {pixels.shape}, the series {volume.shape}")
    return lut[pixels]


def load_case(case: Case, mapping: LabelMapping) -> tuple[Volume, np.ndarray]:
    """The case's image as a `Volume` and its labels (uint8 catalogue values) on the volume's grid."""
    from sarcoscreen.inference.series_errors import SeriesLoadError
    from sarcoscreen.inference.series_loader import load_series

    if case.image.is_dir():
        try:
            volume = load_series(case.image)
        except SeriesLoadError as exc:
            raise DatasetError(f"case {case.name}: cannot load the DICOM series {case.image}: {exc}") from None
    else:
        volume = volume_from_nifti(case.image)
    name = case.labels.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        labels = _labels_from_nifti(case.labels, volume, mapping, case.name)
    else:
        labels = _labels_from_seg(case.labels, volume, mapping, case.name)
    return volume, labels
