"""Series loader: geometry, HU, selection, and one crafted input per refusal; real files from other tools.

Every crafted series is written to disk with pydicom (`ct_series_factory`) and read back through the loader, so
the tests exercise real file parsing and pixel decoding. Compressed transfer syntaxes and multi-frame instances
are in `test_series_loader_codecs.py`.
"""

from __future__ import annotations

import shutil
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from ct_series_factory import assert_matches, edit_file, hu_pattern, write_ct_series
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from sarcoscreen.inference.series_errors import (
    ColourImageError,
    DuplicatePositionError,
    GantryTiltError,
    InvalidOrientationError,
    InvalidRescaleError,
    InvalidSpacingError,
    MissingSlicesError,
    MissingTagError,
    MixedOrientationError,
    MixedPixelGridError,
    MultipleSeriesError,
    NoDicomFilesError,
    NonUniformSpacingError,
    NotCTError,
    PixelDataLengthError,
    SeriesLoadError,
    SeriesNotFoundError,
    TooFewSlicesError,
    UnsupportedImageError,
    UnsupportedTransferSyntaxError,
    VolumeTooLargeError,
)
from sarcoscreen.inference.series_loader import PADDING_HU, load_series


def _rotation(z_deg: float, x_deg: float) -> np.ndarray:
    cz, sz = np.cos(np.radians(z_deg)), np.sin(np.radians(z_deg))
    cx, sx = np.cos(np.radians(x_deg)), np.sin(np.radians(x_deg))
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return rz @ rx


# -- geometry ---------------------------------------------------------------------------------------------------

ORIENTATIONS = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "row-flipped (feet-first view)": ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "both flipped": ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "oblique": (tuple(_rotation(30, 20)[:, 0]), tuple(_rotation(30, 20)[:, 1])),
}


@pytest.mark.parametrize("name", ORIENTATIONS)
@pytest.mark.parametrize("backwards", [False, True], ids=["along-normal", "against-normal"])
def test_geometry_round_trip(tmp_path: Path, name: str, backwards: bool) -> None:
    row, col = ORIENTATIONS[name]
    normal = np.cross(row, col)
    series = write_ct_series(tmp_path, n_slices=7, row_direction=row, column_direction=col,
                             step_direction=tuple(-normal if backwards else normal), slice_spacing=2.5)
    volume = load_series(tmp_path)
    assert_matches(volume, series)
    np.testing.assert_allclose(volume.spacing, (2.5, 0.7, 0.8), atol=1e-6)
    np.testing.assert_allclose(volume.row_direction, row, atol=1e-9)
    np.testing.assert_allclose(volume.column_direction, col, atol=1e-9)
    assert volume.hu.dtype == np.int16
    assert volume.warnings == ()


def test_order_ignores_file_names_and_instance_numbers(tmp_path: Path) -> None:
    """File names sort one way, InstanceNumbers the other way, positions a third: only positions count."""
    order = [3, 0, 5, 1, 4, 2]  # written slice n lies at position order[n] along the normal

    def scramble(ds: Dataset, n: int) -> None:
        ds.InstanceNumber = 100 - n

    series = write_ct_series(tmp_path, n_slices=6, shuffle=False, transform=scramble,
                             positions=[(0.0, 0.0, 10.0 + 2.0 * order[n]) for n in range(6)])
    volume = load_series(tmp_path)
    assert_matches(volume, series)
    expected = [series.sop_instance_uids[order.index(k)] for k in range(6)]
    assert [s.sop_instance_uid for s in volume.slices] == expected


def test_list_of_files_and_single_slice_file_path(tmp_path: Path) -> None:
    series = write_ct_series(tmp_path / "s", n_slices=4)
    volume = load_series(list(reversed(series.files)))
    assert_matches(volume, series)
    with pytest.raises(TooFewSlicesError, match="at least 2"):
        load_series(series.files[0])


def test_series_info_and_slice_refs(tmp_path: Path) -> None:
    series = write_ct_series(tmp_path, n_slices=3, ContrastBolusAgent="Iomeprol")
    volume = load_series(tmp_path)
    info = volume.info
    assert info.series_instance_uid == series.series_instance_uid
    assert info.study_instance_uid == series.study_instance_uid
    assert info.frame_of_reference_uid
    assert (info.modality, info.patient_sex, info.patient_size_m, info.patient_age) == ("CT", "F", 1.62, "071Y")
    assert (info.body_part_examined, info.manufacturer, info.convolution_kernel) == ("PELVIS", "sarcoscreen tests",
                                                                                     "B30f")
    assert (info.slice_thickness_mm, info.contrast_agent) == (2.5, "Iomeprol")
    assert "Crafted" not in repr(info)  # no patient name
    assert "CRAFTED-1" not in repr(info)  # no patient ID
    assert {s.sop_class_uid for s in volume.slices} == {"1.2.840.10008.5.1.4.1.1.2"}
    assert all(s.frame_number is None for s in volume.slices)


def test_progress_reports_every_slice(tmp_path: Path) -> None:
    write_ct_series(tmp_path, n_slices=5)
    calls: list[tuple[int, int]] = []
    load_series(tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(n, 5) for n in range(6)]


# -- HU ------------------------------------------------------------------------------------------------------------


def test_rescale_differs_per_slice(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    slopes, intercepts = [1, 2, 1, 3, 1], [-1024, -2048, -1000, -3000, 0]
    stored = [rng.integers(0, 2000, size=(12, 10)) for _ in slopes]
    hu = [s * m + b for s, m, b in zip(stored, slopes, intercepts, strict=True)]
    series = write_ct_series(tmp_path, n_slices=5, hu=hu, slopes=slopes, intercepts=intercepts, bits_stored=12)
    volume = load_series(tmp_path)
    assert volume.hu.dtype == np.int16
    assert_matches(volume, series)


def test_fractional_slope_gives_float32(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    stored = [rng.integers(0, 4000, size=(12, 10)) for _ in range(3)]
    hu = [s * 0.5 - 1024 for s in stored]
    series = write_ct_series(tmp_path, n_slices=3, hu=hu, slopes=0.5, intercepts=-1024)
    volume = load_series(tmp_path)
    assert volume.hu.dtype == np.float32
    assert_matches(volume, series)


def test_integer_hu_beyond_int16_switches_to_float32(tmp_path: Path) -> None:
    """Unsigned 16-bit stored 65535 with intercept 0 is 65535 HU: int16 cannot hold it, the values stay exact."""
    hu = [np.full((12, 10), 1000), np.full((12, 10), 2000), np.full((12, 10), 65535)]
    hu[1][3, 4] = 0
    series = write_ct_series(tmp_path, n_slices=3, hu=hu, intercepts=0, bits_stored=16, shuffle=False)
    volume = load_series(tmp_path)
    assert volume.hu.dtype == np.float32
    assert_matches(volume, series)


def test_signed_pixels_with_negative_stored_values(tmp_path: Path) -> None:
    """PixelRepresentation 1, BitsStored 16, intercept 0: stored values are HU, many of them negative."""
    hu = hu_pattern(4, 12, 10, seed=5, low=-3000, high=3000)
    series = write_ct_series(tmp_path, n_slices=4, hu=hu, signed=True, bits_stored=16, intercepts=0)
    assert_matches(load_series(tmp_path), series)


def test_signed_12_bit_values_are_sign_extended(tmp_path: Path) -> None:
    """A negative 12-bit stored value arrives in 16 bits as 0x0FFB (upper bits zero): it must read as -5."""
    hu = hu_pattern(3, 12, 10, seed=6, low=-2048, high=2048)

    def zero_upper_bits(ds: Dataset, n: int) -> None:
        raw = np.frombuffer(ds.PixelData, np.uint16) & 0x0FFF
        ds.PixelData = raw.astype(np.uint16).tobytes()

    series = write_ct_series(tmp_path, n_slices=3, hu=hu, signed=True, bits_stored=12, intercepts=0,
                             transform=zero_upper_bits)
    assert_matches(load_series(tmp_path), series)


def test_unsigned_bits_above_bits_stored_are_masked(tmp_path: Path) -> None:
    """BitsStored 12 of 16: junk in the 4 upper bits (overlay remnants) is ignored, as pydicom does."""

    def junk_in_upper_bits(ds: Dataset, n: int) -> None:
        raw = np.frombuffer(ds.PixelData, np.uint16) | 0xA000
        ds.PixelData = raw.astype(np.uint16).tobytes()

    series = write_ct_series(tmp_path, n_slices=3, bits_stored=12, transform=junk_in_upper_bits)
    assert_matches(load_series(tmp_path), series)


def test_padding_value_is_compared_before_the_rescale(tmp_path: Path) -> None:
    """PixelPaddingValue 24 is a *stored* value (HU -1000 after the intercept): those voxels become -1024 HU, while
    voxels whose HU happens to be 24 stay 24."""
    hu = hu_pattern(3, 12, 10, seed=8)
    for h in hu:
        h[2, 2:6] = -1000  # stored 24: padding
        h[5, 2:6] = 24  # HU 24: tissue
    series = write_ct_series(tmp_path, n_slices=3, hu=hu, PixelPaddingValue=24)
    volume = load_series(tmp_path)
    expected = [np.where(h == -1000, PADDING_HU, h) for h in hu]
    series.hu = expected
    assert_matches(volume, series)
    assert np.all(volume.hu[:, 5, 2:6] == 24)


def test_padding_range_limit_and_signed_padding(tmp_path: Path) -> None:
    """Signed stored values, PixelPaddingValue -3000 and PixelPaddingRangeLimit -2001: the whole range is air."""
    hu = hu_pattern(3, 12, 10, seed=9, low=-1000, high=2000)
    for n, h in enumerate(hu):
        h[0, :] = -3000 + n  # padding
        h[1, :] = -2001  # padding (range end, inclusive)
        h[2, :] = -2000  # below -1024 HU but outside the padding range: kept
    series = write_ct_series(tmp_path, n_slices=3, hu=hu, signed=True, bits_stored=16, intercepts=0,
                             PixelPaddingValue=-3000, PixelPaddingRangeLimit=-2001)
    volume = load_series(tmp_path)
    series.hu = [np.where(h <= -2001, PADDING_HU, h) for h in hu]
    assert_matches(volume, series)
    assert np.all(volume.hu[:, 2, :] == -2000)


def test_padding_written_as_unsigned_bit_pattern(tmp_path: Path) -> None:
    """Some writers store the padding of a signed image as US 63536 (the bit pattern of -2000)."""
    hu = hu_pattern(3, 12, 10, seed=10, low=-1000, high=2000)
    for h in hu:
        h[0, :] = -2000

    def unsigned_padding(ds: Dataset, n: int) -> None:
        ds.add_new(0x00280120, "US", 63536)

    series = write_ct_series(tmp_path, n_slices=3, hu=hu, signed=True, bits_stored=16, intercepts=0,
                             transform=unsigned_padding)
    series.hu = [np.where(h == -2000, PADDING_HU, h) for h in hu]
    assert_matches(load_series(tmp_path), series)


def test_monochrome1_loads_unchanged_with_a_warning(tmp_path: Path) -> None:
    series = write_ct_series(tmp_path, n_slices=3, PhotometricInterpretation="MONOCHROME1")
    volume = load_series(tmp_path)
    assert_matches(volume, series)
    assert any("MONOCHROME1" in w for w in volume.warnings)


# -- selection -----------------------------------------------------------------------------------------------------


def test_several_series_are_refused_unless_one_is_chosen(tmp_path: Path) -> None:
    first = write_ct_series(tmp_path / "a" / "deep", n_slices=3, seed=1)
    second = write_ct_series(tmp_path / "b", n_slices=4, seed=2)
    with pytest.raises(MultipleSeriesError, match="2 image series") as caught:
        load_series(tmp_path)
    message = str(caught.value)
    assert first.series_instance_uid in message
    assert second.series_instance_uid in message
    assert set(caught.value.series_instance_uids) == {first.series_instance_uid, second.series_instance_uid}
    assert_matches(load_series(tmp_path, series_instance_uid=first.series_instance_uid), first)
    assert_matches(load_series(tmp_path, series_instance_uid=second.series_instance_uid), second)
    with pytest.raises(SeriesNotFoundError, match=r"1\.2\.3\.4 is not among the 2 series"):
        load_series(tmp_path, series_instance_uid="1.2.3.4")


def test_no_dicom_files(tmp_path: Path) -> None:
    with pytest.raises(NoDicomFilesError, match="does not exist"):
        load_series(tmp_path / "absent")
    with pytest.raises(NoDicomFilesError, match="no DICOM image files"):
        load_series(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image\n")
    with pytest.raises(NoDicomFilesError, match=r"1 file.*not DICOM: notes\.txt"):
        load_series(tmp_path)


def test_non_dicom_and_unreadable_files_are_skipped_with_warnings(tmp_path: Path) -> None:
    series = write_ct_series(tmp_path, n_slices=5)
    (tmp_path / "README.txt").write_text("exported by a PACS viewer\n")
    (tmp_path / ".DS_Store").write_bytes(b"\0\1\2")  # hidden: ignored silently
    (tmp_path / "DICOMDIR").write_bytes(b"ignored by name")
    donor = series.files[0].read_bytes()
    cut = donor.index(series.series_instance_uid.encode()) + 10
    (tmp_path / "broken.dcm").write_bytes(donor[:cut])  # DICM prefix, header cut inside SeriesInstanceUID
    (tmp_path / "short_pixels.dcm").write_bytes(donor[:-50])  # a complete header, the pixel data cut short
    volume = load_series(tmp_path)
    assert_matches(volume, series)
    assert any("skipped 1 file(s) that are not DICOM: README.txt" in w for w in volume.warnings)
    unreadable = next(w for w in volume.warnings if "could not be read" in w)
    assert unreadable.startswith("skipped 2 DICOM file(s)")
    assert "broken.dcm" in unreadable
    assert "short_pixels.dcm" in unreadable


def test_a_truncated_file_inside_the_series_leaves_a_gap_that_is_refused(tmp_path: Path) -> None:
    series = write_ct_series(tmp_path, n_slices=6, shuffle=False)
    series.files[2].write_bytes(series.files[2].read_bytes()[:-10])
    with pytest.raises(MissingSlicesError, match="about 1 slice"):
        load_series(tmp_path)


def test_dicomdir_file_set_with_nested_files(tmp_path: Path) -> None:
    """A real media file set (DICOMDIR + PT/ST/SE/IM folders, files without extension), written by pydicom."""
    series = write_ct_series(tmp_path / "src", n_slices=4)
    file_set = FileSet()
    for path in series.files:
        file_set.add(pydicom.dcmread(path))
    file_set.write(tmp_path / "media")
    assert (tmp_path / "media" / "DICOMDIR").is_file()
    volume = load_series(tmp_path / "media")
    assert volume.warnings == ()
    np.testing.assert_array_equal(np.sort(volume.hu, axis=None), np.sort(np.stack(series.hu), axis=None))
    assert {s.sop_instance_uid for s in volume.slices} == set(series.sop_instance_uids)


def test_raw_data_sets_without_file_meta(tmp_path: Path) -> None:
    """Old exports write the bare data set (no preamble, no DICM, no file meta): implicit VR little endian."""
    series = write_ct_series(tmp_path, n_slices=4, signed=True, bits_stored=16, intercepts=0,
                             hu=hu_pattern(4, 12, 10, seed=11, low=-2000, high=2000))
    for path in series.files:
        ds = pydicom.dcmread(path)
        del ds.file_meta
        ds.preamble = None
        pydicom.dcmwrite(path, ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
        assert path.read_bytes()[:2] == b"\x08\x00"
    volume = load_series(tmp_path)
    assert_matches(volume, series)
    assert volume.warnings == ()


def test_identical_copies_are_deduplicated(tmp_path: Path) -> None:
    series = write_ct_series(tmp_path, n_slices=4)
    shutil.copy(series.files[1], tmp_path / "copy-of-one.dcm")
    volume = load_series(tmp_path)
    assert_matches(volume, series)
    assert any("1 duplicate copy" in w for w in volume.warnings)


def test_missing_series_uid_is_tolerated_with_a_warning(tmp_path: Path) -> None:
    def no_uids(ds: Dataset, n: int) -> None:
        ds.SeriesInstanceUID = ""
        ds.SOPInstanceUID = ""  # the file meta still has MediaStorageSOPInstanceUID

    series = write_ct_series(tmp_path, n_slices=3, transform=no_uids)
    volume = load_series(tmp_path)
    assert volume.info.series_instance_uid == ""
    assert any("no SeriesInstanceUID" in w for w in volume.warnings)
    metas = [pydicom.dcmread(p, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID for p in series.files]
    assert {s.sop_instance_uid for s in volume.slices} == set(metas)


# -- localizers ----------------------------------------------------------------------------------------------------


def _localizer(folder: Path, series_uid: str, image_type: list[str], name: str) -> None:
    """A coronal projection image, 8 x 14 pixels, in the same series."""

    def coronal(ds: Dataset, n: int) -> None:
        ds.ImageType = image_type
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]

    write_ct_series(folder / name, n_slices=1, rows=8, columns=14, series_instance_uid=series_uid,
                    transform=coronal)


def test_typed_localizer_is_excluded_with_a_warning(tmp_path: Path) -> None:
    series = write_ct_series(tmp_path, n_slices=5)
    _localizer(tmp_path, series.series_instance_uid, ["ORIGINAL", "PRIMARY", "LOCALIZER"], "scout")
    volume = load_series(tmp_path)
    assert_matches(volume, series)
    assert any("1 localizer" in w for w in volume.warnings)


def test_stray_orientation_is_taken_for_a_localizer(tmp_path: Path) -> None:
    series = write_ct_series(tmp_path, n_slices=8, rows=8, columns=14)
    _localizer(tmp_path, series.series_instance_uid, ["ORIGINAL", "PRIMARY", "OTHER"], "survey")
    volume = load_series(tmp_path)
    assert_matches(volume, series)
    assert any("orientation differs" in w and "localizers" in w for w in volume.warnings)


def test_mixed_orientations_are_refused(tmp_path: Path) -> None:
    series = write_ct_series(tmp_path, n_slices=6)

    def sagittal(ds: Dataset) -> None:
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]

    for path in series.files[:3]:
        edit_file(path, sagittal)
    with pytest.raises(MixedOrientationError, match="2 different orientations"):
        load_series(tmp_path)


def test_slightly_rotated_slice_is_a_different_orientation(tmp_path: Path) -> None:
    """0.5° is beyond the 0.1° tolerance; too many such slices to be localizers -> refused."""
    series = write_ct_series(tmp_path, n_slices=4)
    r = _rotation(0.5, 0)

    def rotated(ds: Dataset) -> None:
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*r[:, 0], *r[:, 1])]

    for path in series.files[:2]:
        edit_file(path, rotated)
    with pytest.raises(MixedOrientationError):
        load_series(tmp_path)


# -- refusals -------------------------------------------------------------------------------------------------------


def test_non_ct_modality_is_named(tmp_path: Path) -> None:
    write_ct_series(tmp_path, n_slices=3, Modality="MR")
    with pytest.raises(NotCTError, match=r"Modality \(0008,0060\) is MR") as caught:
        load_series(tmp_path)
    assert caught.value.modality == "MR"


def test_colour_image_is_refused(tmp_path: Path) -> None:
    def rgb(ds: Dataset, n: int) -> None:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = np.zeros((ds.Rows, ds.Columns, 3), np.uint8).tobytes()

    write_ct_series(tmp_path, n_slices=3, transform=rgb)
    with pytest.raises(ColourImageError, match="PhotometricInterpretation RGB, SamplesPerPixel 3"):
        load_series(tmp_path)


def test_single_slice_is_refused(tmp_path: Path) -> None:
    write_ct_series(tmp_path, n_slices=1)
    with pytest.raises(TooFewSlicesError, match="1 image slice"):
        load_series(tmp_path)


def test_only_localizers_leave_no_slices(tmp_path: Path) -> None:
    write_ct_series(tmp_path, n_slices=2, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    with pytest.raises(TooFewSlicesError, match=r"0 image slice.*2 localizer"):
        load_series(tmp_path)


def test_duplicate_positions_of_different_instances(tmp_path: Path) -> None:
    series = write_ct_series(tmp_path, n_slices=5, shuffle=False)
    position = pydicom.dcmread(series.files[2]).ImagePositionPatient

    def same_place(ds: Dataset) -> None:
        ds.ImagePositionPatient = position

    edit_file(series.files[3], same_place)
    with pytest.raises(DuplicatePositionError, match=r"1 slice position.*different SOP instances"):
        load_series(tmp_path)


def test_missing_slice_gap(tmp_path: Path) -> None:
    series = write_ct_series(tmp_path, n_slices=8, shuffle=False)
    series.files[4].unlink()
    with pytest.raises(MissingSlicesError, match=r"5\.00 mm .* 2\.0 times the median spacing 2\.500 mm"):
        load_series(tmp_path)


def test_non_uniform_spacing(tmp_path: Path) -> None:
    """Steps of 2.5 mm with one of 2.8 mm: beyond 0.1 mm, below the 1.5x gap threshold."""
    z = [0.0, 2.5, 5.0, 7.8, 10.3, 12.8]
    write_ct_series(tmp_path, n_slices=6, positions=[(0.0, 0.0, v) for v in z])
    with pytest.raises(NonUniformSpacingError, match=r"2\.500 to 2\.800 mm .* tolerance of 0\.100 mm"):
        load_series(tmp_path)


def test_spacing_jitter_within_tolerance_is_accepted(tmp_path: Path) -> None:
    z = [0.0, 2.51, 4.99, 7.5, 10.02, 12.5]
    series = write_ct_series(tmp_path, n_slices=6, positions=[(0.0, 0.0, v) for v in z])
    volume = load_series(tmp_path)
    assert_matches(volume, series, atol_mm=0.021)
    assert volume.spacing[0] == pytest.approx(2.5)


def test_gantry_tilt_is_rejected_with_its_angle(tmp_path: Path) -> None:
    tilt = np.radians(15.0)
    write_ct_series(tmp_path, n_slices=6, step_direction=(0.0, np.sin(tilt), np.cos(tilt)))
    with pytest.raises(GantryTiltError, match=r"15\.00° .* rejected, not resampled") as caught:
        load_series(tmp_path)
    assert caught.value.angle_deg == pytest.approx(15.0, abs=0.01)


def test_one_slice_shifted_within_its_plane_is_rejected(tmp_path: Path) -> None:
    positions = [(0.0, 0.0, 2.5 * n) for n in range(6)]
    positions[3] = (3.0, 0.0, 7.5)
    write_ct_series(tmp_path, n_slices=6, positions=positions)
    with pytest.raises(GantryTiltError, match=r"sheared: slice 3 lies 3\.00 mm off"):
        load_series(tmp_path)


def test_mixed_pixel_spacing(tmp_path: Path) -> None:
    series = write_ct_series(tmp_path, n_slices=4)

    def finer(ds: Dataset) -> None:
        ds.PixelSpacing = [0.5, 0.5]

    edit_file(series.files[0], finer)
    with pytest.raises(MixedPixelGridError, match=r"0\.5x0\.5 mm"):
        load_series(tmp_path)


def test_mixed_rows_and_columns(tmp_path: Path) -> None:
    series = write_ct_series(tmp_path, n_slices=4, rows=12, columns=10)
    write_ct_series(tmp_path / "bigger", n_slices=1, rows=16, columns=10, origin=(-12.0, -30.0, 110.0),
                    series_instance_uid=series.series_instance_uid)
    with pytest.raises(MixedPixelGridError, match=r"16x10 pixels .*\(1 images\)"):
        load_series(tmp_path)


@pytest.mark.parametrize(
    ("keyword", "phrase"),
    [
        ("ImagePositionPatient", r"ImagePositionPatient \(0020,0032\) is missing"),
        ("ImageOrientationPatient", r"ImageOrientationPatient \(0020,0037\) is missing"),
        ("PixelSpacing", r"PixelSpacing \(0028,0030\) is missing"),
        ("RescaleIntercept", r"RescaleIntercept \(0028,1052\) is missing"),
        ("PixelData", r"PixelData \(7FE0,0010\) is missing"),
    ],
)
def test_missing_required_attribute_is_named(tmp_path: Path, keyword: str, phrase: str) -> None:
    series = write_ct_series(tmp_path, n_slices=4)

    def remove(ds: Dataset) -> None:
        delattr(ds, keyword)

    edit_file(series.files[1], remove)
    with pytest.raises(MissingTagError, match=phrase) as caught:
        load_series(tmp_path)
    assert caught.value.keyword == keyword


def test_malformed_position_counts_as_missing(tmp_path: Path) -> None:
    series = write_ct_series(tmp_path, n_slices=3)

    def two_values(ds: Dataset) -> None:
        ds.ImagePositionPatient = [1.0, 2.0]

    edit_file(series.files[0], two_values)
    with pytest.raises(MissingTagError, match="missing or malformed in 1 of 3"):
        load_series(tmp_path)


def test_non_orthogonal_orientation(tmp_path: Path) -> None:
    write_ct_series(tmp_path, n_slices=3, transform=lambda ds, n: setattr(ds, "ImageOrientationPatient",
                                                                          [1, 0, 0, 0.5, 0.8, 0]))
    with pytest.raises(InvalidOrientationError, match="orthogonal unit vectors"):
        load_series(tmp_path)


def _raw(keyword: str, text: str) -> RawDataElement:
    """`keyword` with the raw bytes of `text` (pydicom refuses to set malformed numbers)."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    data = text.encode() + b" " * (len(text) % 2)
    return RawDataElement(tag, pydicom.datadict.dictionary_VR(tag), len(data), data, 0, False, True)


@pytest.mark.parametrize(
    ("keyword", "value", "error", "phrase"),
    [
        ("PixelSpacing", "0\\0", InvalidSpacingError, r"PixelSpacing \(0028,0030\) is not two positive numbers"),
        ("PixelSpacing", "-0.7\\0.8", InvalidSpacingError, r"PixelSpacing \(0028,0030\) is not two positive"),
        ("SliceThickness", "0", InvalidSpacingError, r"SliceThickness \(0018,0050\) is not a positive number"),
        ("SliceThickness", "-2.5", InvalidSpacingError, r"SliceThickness \(0018,0050\) is not a positive number"),
        ("SliceThickness", "thick", InvalidSpacingError, r"SliceThickness \(0018,0050\) is not a positive number"),
        ("RescaleSlope", "0", InvalidRescaleError, r"RescaleSlope \(0028,1053\) is 0"),
        ("ImageOrientationPatient", "0\\0\\0\\0\\0\\0", InvalidOrientationError, "orthogonal unit vectors"),
        ("ImageOrientationPatient", "1\\0\\0\\0\\1\\0.5", InvalidOrientationError, "orthogonal unit vectors"),
    ],
    ids=["spacing-0", "spacing-negative", "thickness-0", "thickness-negative", "thickness-word", "slope-0",
         "orientation-0", "orientation-not-unit"],
)
def test_values_that_break_the_geometry_or_the_rescale_are_refused(
        tmp_path: Path, keyword: str, value: str, error: type[SeriesLoadError], phrase: str) -> None:
    """Issue 11: PixelSpacing 0\\0 loaded and made the engine divide by zero. Every slice's spacing, thickness,
    slope and orientation is checked, here in one slice that is not the first."""
    series = write_ct_series(tmp_path, n_slices=4, shuffle=False)
    edit_file(series.files[2], lambda ds: ds.__setitem__(pydicom.datadict.tag_for_keyword(keyword),
                                                         _raw(keyword, value)))
    with pytest.raises(error, match=phrase) as caught:
        load_series(tmp_path)
    assert caught.value.keyword == keyword


def _peak_bytes(call: Callable[[], object]) -> tuple[BaseException | None, int]:
    """What `call` raised and the peak of memory allocated meanwhile (numpy reports its arrays to tracemalloc)."""
    tracemalloc.start()
    try:
        call()
    except Exception as exc:  # returned to the test
        raised: BaseException | None = exc
    else:
        raised = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return raised, peak


def test_rows_and_columns_beyond_the_pixel_data_are_refused_before_allocating(tmp_path: Path) -> None:
    """Issue 11: Rows x Columns 65535 x 65535 made the loader allocate 24 GiB for three slices of 12 x 10 pixels."""
    write_ct_series(tmp_path, n_slices=3, transform=lambda ds, n: setattr(ds, "Rows", 65535) or setattr(
        ds, "Columns", 65535))
    raised, peak = _peak_bytes(lambda: load_series(tmp_path))
    assert isinstance(raised, PixelDataLengthError), raised
    assert "Rows x Columns 65535 x 65535 of 16 bits declare 8589672450 bytes per frame" in str(raised)
    assert "the pixel data holds 240 bytes" in str(raised)
    assert peak < 64 << 20


def test_a_volume_beyond_the_limit_is_refused_before_allocating_and_the_error_names_the_limit(tmp_path: Path) -> None:
    write_ct_series(tmp_path, n_slices=3, rows=12, columns=10)
    assert load_series(tmp_path, max_volume_bytes=720).hu.nbytes == 720  # int16: exactly the limit
    raised, peak = _peak_bytes(lambda: load_series(tmp_path, max_volume_bytes=719))
    assert isinstance(raised, VolumeTooLargeError), raised
    assert str(raised) == ("the volume of 3 slices of 12 x 10 pixels would take 720 bytes as int16 HU, more than "
                           "the limit of 719 bytes")
    assert (raised.needed_bytes, raised.limit_bytes) == (720, 719)
    assert peak < 1 << 20


def test_analyze_applies_the_configured_volume_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`sarcoscreen analyze` refuses, like the worker, a volume beyond ``worker.max_volume_mb`` (it used the
    loader's 8 GiB default whatever the setting)."""
    from sarcoscreen.node.cli import main

    write_ct_series(tmp_path / "series", n_slices=9, rows=256, columns=256)  # 1.125 MiB as int16
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SARCOSCREEN_WORKER__MAX_VOLUME_MB", "1")
    assert main(["analyze", str(tmp_path / "series"), "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    assert "more than the limit of 1.0 MiB" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_modality_lut_sequence_is_refused(tmp_path: Path) -> None:
    def with_lut(ds: Dataset, n: int) -> None:
        item = Dataset()
        item.LUTDescriptor = [4096, 0, 16]
        item.ModalityLUTType = "HU"
        item.add_new(0x00283006, "OW", np.arange(4096, dtype=np.uint16).tobytes())  # LUTData
        ds.ModalityLUTSequence = DicomSequence([item])

    write_ct_series(tmp_path, n_slices=3, transform=with_lut)
    with pytest.raises(UnsupportedImageError, match="Modality LUT Sequence"):
        load_series(tmp_path)


@pytest.mark.parametrize(
    ("uid", "phrase"),
    [("1.2.840.10008.1.2.4.100", "MPEG2 Main Profile"), ("1.2.840.10008.1.2.4.110", r"1\.2\.840\.10008\.1\.2\.4\.110")],
    ids=["mpeg2", "jpeg-xl"],
)
def test_undecodable_transfer_syntax_is_named(tmp_path: Path, uid: str, phrase: str) -> None:
    """pydicom writes MPEG2 but not JPEG XL (unknown to it); the JPEG XL file is made by patching the UID bytes."""
    mpeg2 = "1.2.840.10008.1.2.4.100"

    def encapsulated(ds: Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = mpeg2
        ds.PixelData = pydicom.encaps.encapsulate([bytes(64)])
        ds["PixelData"].VR = "OB"

    series = write_ct_series(tmp_path, n_slices=3)
    for path in series.files:
        edit_file(path, encapsulated)
        path.write_bytes(path.read_bytes().replace(mpeg2.encode(), uid.encode()))
    with pytest.raises(UnsupportedTransferSyntaxError, match=phrase) as caught:
        load_series(tmp_path)
    assert caught.value.transfer_syntax_uid == uid


def test_every_refusal_is_a_series_load_error(tmp_path: Path) -> None:
    """The callers (inspect, analyze) catch only the base class."""
    write_ct_series(tmp_path, n_slices=3, Modality="PT")
    with pytest.raises(SeriesLoadError):
        load_series(tmp_path)


def test_no_patient_identifiers_in_messages(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "a", n_slices=3, Modality="MR")
    with pytest.raises(SeriesLoadError) as caught:
        load_series(tmp_path / "a")
    write_ct_series(tmp_path / "b", n_slices=2)
    with pytest.raises(SeriesLoadError) as both:
        load_series(tmp_path)
    for exc in (caught.value, both.value):
        assert "Crafted" not in str(exc)
        assert "CRAFTED-1" not in str(exc)


def test_uid_generation_is_fresh() -> None:
    """Guard for the factory: two series never share UIDs by accident."""
    assert generate_uid() != generate_uid()


# -- real files from other tools -------------------------------------------------------------------------------------


def test_real_siemens_jpeg2000_series(shared_data: Path) -> None:
    volume = load_series(shared_data / "siemens-ct-jpeg2000")
    assert volume.shape == (20, 512, 512)
    assert volume.hu.dtype == np.int16
    np.testing.assert_allclose(volume.spacing, (2.0, 0.977, 0.977), atol=0.01)
    assert volume.normal == pytest.approx([0, 0, 1])
    z = volume.slice_z_mm()
    assert np.all(np.diff(z) > 0)
    assert (z[0], z[-1]) == pytest.approx((-804.5, -766.5))
    hu = volume.hu
    air = hu[:, 40:60, 236:276]  # anterior to the body, inside the reconstruction circle
    assert -1050 < float(np.median(air)) < -950
    n = hu.size
    fat = np.count_nonzero((hu >= -150) & (hu <= -50)) / n
    soft = np.count_nonzero((hu >= 0) & (hu <= 100)) / n
    assert 0.03 < fat < 0.15, fat
    assert 0.08 < soft < 0.30, soft
    assert hu.min() >= -1024
    assert hu.max() > 300  # bone
    # the de-identified files have empty SOP/series UIDs in the data set; the file meta gives the instance UID
    assert all(s.sop_instance_uid.startswith("1.3.12.2.1107.5.1.4.60064") for s in volume.slices)
    assert (volume.info.convolution_kernel, volume.info.slice_thickness_mm) == ("Br38f\\3", 3.0)


def test_real_ge_series_with_padding(shared_data: Path) -> None:
    """GE writes PixelPaddingValue -2000 (SS) outside the scan circle: those voxels must be -1024, not -3024."""
    folder = shared_data / "dcmqi" / "ct-3slice"
    volume = load_series(folder)
    assert volume.shape == (3, 512, 512)
    np.testing.assert_allclose(volume.spacing, (1.0, 0.810547, 0.810547), atol=1e-5)
    by_uid = {s.sop_instance_uid: k for k, s in enumerate(volume.slices)}
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array.astype(np.int32)
        expected = np.where(stored == -2000, PADDING_HU, stored * int(ds.RescaleSlope) + int(ds.RescaleIntercept))
        np.testing.assert_array_equal(volume.hu[by_uid[ds.SOPInstanceUID]], expected)
    assert volume.hu.min() == PADDING_HU
    assert np.count_nonzero(volume.hu[0] == PADDING_HU) >= 55772
    assert (volume.info.patient_sex, volume.info.convolution_kernel) == ("M", "STANDARD")
