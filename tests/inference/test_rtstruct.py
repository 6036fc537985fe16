"""RT Structure Sets: synthetic structure sets whose masks are known exactly, and the real 002/003 structure sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from matplotlib.path import Path as PolygonPath
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from sarcoscreen.inference.rtstruct import (
    RT_STRUCTURE_SET_STORAGE,
    AmbiguousRoiNameError,
    ContourGeometryError,
    FrameOfReferenceMismatchError,
    NotAStructureSetError,
    RoiNotFoundError,
    fill_even_odd,
    rasterise_roi,
    read_structure_set,
)
from sarcoscreen.inference.series_loader import load_series
from sarcoscreen.inference.volume import SeriesInfo, SliceRef, Volume

FOR_UID = "1.2.826.0.1.3680043.8.498.1"


def _volume(row_direction: tuple[float, float, float] = (1.0, 0.0, 0.0),
            column_direction: tuple[float, float, float] = (0.0, 1.0, 0.0), n: int = 6) -> Volume:
    """A 6 x 20 x 24 volume of 2.5 mm slices and 0.8 x 0.7 mm pixels, slices stacked along the normal."""
    normal = np.cross(row_direction, column_direction)
    origin = np.array([-12.0, 30.0, 100.0])
    positions = np.array([origin + 2.5 * k * normal for k in range(n)])
    return Volume(hu=np.zeros((n, 20, 24), np.int16), spacing=(2.5, 0.8, 0.7), row_direction=row_direction,
                  column_direction=column_direction, positions=positions,
                  slices=tuple(SliceRef(f"1.2.3.{k}", "1.2.840.10008.5.1.4.1.1.2") for k in range(n)),
                  info=SeriesInfo("1.2.1", "1.2.2", FOR_UID))


def _patient(volume: Volume, k: int, pixels: list[tuple[float, float]], dz: float = 0.0) -> list[float]:
    """ContourData for (row, column) pixel coordinates on slice `k`, shifted `dz` mm along the normal."""
    out: list[float] = []
    for row, column in pixels:
        p = (volume.positions[k] + column * volume.spacing[2] * np.asarray(volume.row_direction)
             + row * volume.spacing[1] * np.asarray(volume.column_direction) + dz * volume.normal)
        out.extend(float(v) for v in p)
    return out


def _rectangle(top: int, left: int, bottom: int, right: int) -> list[tuple[float, float]]:
    """Half-pixel corners of the pixels rows top..bottom, columns left..right (inclusive)."""
    return [(top - 0.5, left - 0.5), (top - 0.5, right + 0.5), (bottom + 0.5, right + 0.5),
            (bottom + 0.5, left - 0.5)]


def _structure_set(rois: list[tuple[int, str, list[tuple[str, list[float]]]]], for_uid: str = FOR_UID) -> Dataset:
    """An RT Structure Set with `rois`: (number, name, [(geometric type, contour data), ...])."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = RT_STRUCTURE_SET_STORAGE
    ds.SOPClassUID = RT_STRUCTURE_SET_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.StructureSetLabel = "test"
    ds.StructureSetROISequence = DicomSequence()
    ds.ROIContourSequence = DicomSequence()
    ds.RTROIObservationsSequence = DicomSequence()
    for number, name, contours in rois:
        roi = Dataset()
        roi.ROINumber = number
        roi.ROIName = name
        roi.ReferencedFrameOfReferenceUID = for_uid
        roi.ROIGenerationAlgorithm = "MANUAL"
        ds.StructureSetROISequence.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        item.ContourSequence = DicomSequence()
        for kind, data in contours:
            contour = Dataset()
            contour.ContourGeometricType = kind
            contour.NumberOfContourPoints = len(data) // 3
            contour.ContourData = [f"{v:.6f}" for v in data]
            item.ContourSequence.append(contour)
        ds.ROIContourSequence.append(item)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = "ORGAN"
        ds.RTROIObservationsSequence.append(observation)
    return ds


@pytest.mark.parametrize(("row_direction", "column_direction"), [
    ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),     # head first supine: normal +z
    ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),    # mirrored rows: normal -z, slices stacked downwards
    ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0)),    # prone-like: columns run anterior
])
def test_nested_and_keyhole_holes_and_slice_matching_are_exact(tmp_path: Path, row_direction: tuple[float, ...],
                                                              column_direction: tuple[float, ...]) -> None:
    volume = _volume(row_direction, column_direction)  # type: ignore[arg-type]
    expected = np.zeros(volume.shape, bool)
    contours: list[tuple[str, list[float]]] = []
    # Slice 1: a rectangle with a rectangular hole drawn as a second, nested contour.
    expected[1, 3:13, 4:16] = True
    expected[1, 6:9, 8:11] = False
    contours.append(("CLOSED_PLANAR", _patient(volume, 1, _rectangle(3, 4, 12, 15))))
    contours.append(("CLOSED_PLANAR", _patient(volume, 1, _rectangle(6, 8, 8, 10))))
    # Slice 2: the same shape as one keyhole contour (outer ring, a zero-width cut, the hole the other way round),
    # 0.4 slice above the slice: still matched to it.
    expected[2] = expected[1]
    keyhole = [(2.5, 3.5), (2.5, 15.5), (12.5, 15.5), (12.5, 3.5), (5.5, 3.5), (5.5, 7.5), (8.5, 7.5),
               (8.5, 10.5), (5.5, 10.5), (5.5, 7.5), (5.5, 3.5)]
    contours.append(("CLOSED_PLANAR", _patient(volume, 2, keyhole, dz=0.4 * 2.5)))
    # Slice 4: two overlapping squares: the overlap is covered twice, so even-odd leaves it out.
    expected[4, 0:6, 0:6] = True
    expected[4, 3:10, 3:10] ^= True
    contours.append(("CLOSED_PLANAR", _patient(volume, 4, _rectangle(0, 0, 5, 5))))
    contours.append(("CLOSED_PLANAR", _patient(volume, 3, _rectangle(3, 3, 9, 9), dz=0.6 * 2.5)))  # -> slice 4
    # A triangle, pixel centres tested against the edges: rows 10..14 at columns >= row (below the diagonal).
    expected[5, 10:15, :] = np.arange(24)[None, :] >= np.arange(10, 15)[:, None]
    expected[5, 10:15, 20:] = False
    contours.append(("CLOSED_PLANAR", _patient(volume, 5, [(9.5, 9.5), (9.5, 19.5), (14.5, 19.5), (14.5, 14.5)])))
    # Off-area items: a point, an open contour, a contour beyond the last slice.
    contours.append(("POINT", _patient(volume, 0, [(1.0, 1.0)])))
    contours.append(("OPEN_PLANAR", _patient(volume, 0, [(1.0, 1.0), (5.0, 5.0), (1.0, 8.0)])))
    contours.append(("CLOSED_PLANAR", _patient(volume, 5, _rectangle(1, 1, 4, 4), dz=2.5)))
    ds = _structure_set([(7, "Bladder", contours)])
    path = tmp_path / "rs.dcm"
    ds.save_as(path, enforce_file_format=True)
    structure_set = read_structure_set(path)
    roi = structure_set.roi("  bLaDdEr ")
    assert roi.number == 7
    assert roi.interpreted_type == "ORGAN"
    mask = rasterise_roi(roi, volume)
    assert mask.shape == volume.shape
    assert mask.dtype == bool
    for k in range(volume.shape[0]):
        np.testing.assert_array_equal(mask[k], expected[k], err_msg=f"slice {k}")
    with pytest.raises(ContourGeometryError, match="outside the volume"):
        rasterise_roi(roi, volume, strict=True)


def test_fill_agrees_with_matplotlib_on_random_polygons() -> None:
    """Star-shaped polygons with random vertices (no pixel centre on an edge) against matplotlib's
    point-in-path test; several overlapping polygons combine by XOR."""
    rng = np.random.default_rng(7)
    shape = (40, 50)
    centres = np.stack(np.mgrid[:shape[0], :shape[1]], axis=-1).reshape(-1, 2).astype(float)
    for _ in range(30):
        polygons = []
        expected = np.zeros(shape, bool)
        for _ in range(rng.integers(1, 4)):
            n = int(rng.integers(3, 12))
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            radii = rng.uniform(3, 22, n)
            centre = rng.uniform([-5, -5], [45, 55])
            polygon = np.stack([centre[0] + radii * np.sin(angles), centre[1] + radii * np.cos(angles)], axis=1)
            polygons.append(polygon)
            expected ^= PolygonPath(polygon).contains_points(centres).reshape(shape)
        np.testing.assert_array_equal(fill_even_odd(polygons, shape), expected)


def test_lookup_and_refusals() -> None:
    volume = _volume()
    square = ("CLOSED_PLANAR", _patient(volume, 1, _rectangle(1, 1, 3, 3)))
    ds = _structure_set([(1, "Rectum", [square]), (2, "rectum ", [square]), (3, "Marker", [
        ("POINT", _patient(volume, 1, [(2.0, 2.0)]))])])
    structure_set = read_structure_set(ds)
    with pytest.raises(AmbiguousRoiNameError):
        structure_set.roi("RECTUM")
    with pytest.raises(RoiNotFoundError, match="Marker") as info:
        structure_set.roi("Bladder")
    assert "Rectum" in info.value.available
    assert structure_set.first_of(["Vescica", "Marker"]).number == 3
    with pytest.raises(ContourGeometryError, match="no closed planar contour"):
        rasterise_roi(structure_set.roi("marker"), volume)
    other = read_structure_set(_structure_set([(1, "Rectum", [square])], for_uid="1.2.3.999"))
    with pytest.raises(FrameOfReferenceMismatchError):
        rasterise_roi(other.roi("Rectum"), volume)
    assert rasterise_roi(other.roi("Rectum"), volume, check_frame_of_reference=False).sum() == 9
    tilted = _patient(volume, 1, _rectangle(1, 1, 3, 3))
    tilted[2] += 1.0  # first point 1 mm off the slice plane (0.4 of the 2.5 mm spacing)
    with pytest.raises(ContourGeometryError, match="not in a plane parallel"):
        rasterise_roi(read_structure_set(_structure_set([(1, "T", [("CLOSED_PLANAR", tilted)])])).roi("T"), volume)
    broken = _structure_set([(1, "B", [square])])
    broken.ROIContourSequence[0].ContourSequence[0].ContourData = ["1", "2"]
    with pytest.raises(ContourGeometryError, match="triplets"):
        read_structure_set(broken)
    ct = Dataset()
    ct.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ct.Modality = "CT"
    with pytest.raises(NotAStructureSetError, match="not an RT Structure Set"):
        read_structure_set(ct)


def test_not_dicom_file(tmp_path: Path) -> None:
    (tmp_path / "x.dcm").write_bytes(b"not dicom at all")
    with pytest.raises(NotAStructureSetError):
        read_structure_set(tmp_path / "x.dcm")


# The manual contours of the Pelvic Reference Data structure sets are the Italian names; "_MBS" and "_DL" are the
# two automatic methods (see ../shared/data/README.md and the config of the repository the files come from).
MANUAL = {"bladder": ("Vescica",), "rectum": ("Retto", "RettoAno"), "prostate": ("Prostata",),
          "femoral_head_left": ("FemoreSinistro", "femoreSin"), "femoral_head_right": ("FemoreDestro", "femoreDes")}


@pytest.mark.parametrize("case", ["Pelvic-Ref-002", "Pelvic-Ref-003"])
def test_real_structure_set_lands_on_its_ct(shared_data: Path, case: str) -> None:
    folder = shared_data / "pelvic-ref-ct" / case
    files = sorted((folder / "rtstruct").glob("*.dcm"))
    if not files or not (folder / "ct").is_dir():
        pytest.skip(f"no CT and RT Structure Set under {folder}")
    volume = load_series(folder / "ct")
    structure_set = read_structure_set(files[0])
    voxel_cm3 = volume.voxel_volume_mm3 / 1000
    masks = {name: rasterise_roi(structure_set.first_of(names), volume, strict=True) for name, names in MANUAL.items()}
    bladder, prostate, rectum = (masks[n].sum() * voxel_cm3 for n in ("bladder", "prostate", "rectum"))
    assert 30 < bladder < 1000, bladder
    assert 10 < prostate < 150, prostate
    assert 10 < rectum < 300, rectum
    # Soft tissue inside the bladder (urine ~0-30 HU), bone inside the femoral heads.
    assert -20 <= np.median(volume.hu[masks["bladder"]]) <= 40
    midline_x = volume.positions[0][0] + volume.shape[2] / 2 * volume.spacing[2]  # the image centre, roughly
    for side in ("left", "right"):
        head = masks[f"femoral_head_{side}"]
        assert np.median(volume.hu[head]) > 150, side
        assert (volume.hu[head] > 150).mean() > 0.45, side  # the manual outlines are drawn generously
        columns = np.nonzero(head)[2]
        x = volume.positions[0][0] + columns.mean() * volume.spacing[2] * volume.row_direction[0]
        assert (x > midline_x) == (side == "left"), side  # LPS: +x is the patient's left
        # The manual contour and the automatic (model-based) one lie at the same place in the axial plane (the
        # manual ones reach further down the femoral neck).
        automatic = rasterise_roi(structure_set.roi(f"FemoralHead ({side.capitalize()})_MBS"), volume)
        centres = [np.array(np.nonzero(m))[1:].mean(axis=1) * np.asarray(volume.spacing[1:]) for m in (head, automatic)]
        assert np.linalg.norm(centres[0] - centres[1]) < 8.0, side
    assert pydicom.dcmread(files[0], stop_before_pixels=True).Modality == "RTSTRUCT"
