"""Series loader: compressed transfer syntaxes and multi-frame (Enhanced / Legacy Converted Enhanced CT) instances.

Compressed inputs are encoded for real: with pydicom's encoders (RLE, JPEG-LS via pyjpegls, JPEG 2000 via
pylibjpeg-openjpeg, deflate) and with dcmtk's command-line tools (JPEG lossless and lossy, JPEG-LS, RLE, deflate,
big endian; skipped when dcmtk is not installed). Each test first checks that the file really carries the
transfer syntax under test, so a silent no-op encoder cannot make it pass. Lossless syntaxes must give exactly the
HU written; lossy ones within a stated error. Multi-frame instances are made with highdicom from the real
Siemens series and must give the same HU and geometry as the single-frame files.
"""

from __future__ import annotations

import copy
import random
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from ct_series_factory import CTSeries, assert_matches, edit_file, write_ct_series
from dcmtk import dcmtk_tool
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    JPEG2000,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedCTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    LegacyConvertedEnhancedCTImageStorage,
    RLELossless,
    generate_uid,
)

from sarcoscreen.inference.series_errors import PixelDecodeError
from sarcoscreen.inference.series_loader import decodable_transfer_syntaxes, load_series
from sarcoscreen.inference.volume import Volume

ROWS, COLUMNS = 64, 72  # JPEG 2000's default five decomposition levels need at least 32 pixels a side


def smooth_hu(n_slices: int, low: int = -1024, high: int = 1400, step: int = 1) -> list[np.ndarray]:
    """Body-like slices with smooth texture (lossy codecs are judged on it), multiples of `step`."""
    ii, jj = np.mgrid[:ROWS, :COLUMNS]
    inside = ((ii - ROWS / 2) / (ROWS * 0.42)) ** 2 + ((jj - COLUMNS / 2) / (COLUMNS * 0.45)) ** 2 <= 1
    slices = []
    for n in range(n_slices):
        texture = 300 * np.sin(ii / 6 + n) * np.cos(jj / 9) + 4 * (ii + jj)
        hu = np.where(inside, np.clip(40 + texture, low + 50, high - 50), -1000)
        hu[0, 0], hu[-1, -1] = low, high
        slices.append((np.round(hu / step) * step).astype(np.int32))
    return slices


def _compress(tsyntax: str, **options: object) -> Callable[[Dataset], None]:
    def encode(ds: Dataset) -> None:
        ds.compress(tsyntax, generate_instance_uid=False, **options)

    return encode


def _deflate(ds: Dataset) -> None:
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian  # pydicom deflates the data set on writing


def _transfer_syntax(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


def _series(folder: Path, signed: bool, hu: list[np.ndarray] | None = None, **kwargs: object) -> CTSeries:
    hu = hu if hu is not None else smooth_hu(4, low=-2000 if signed else -1024, high=3000)
    if signed:
        return write_ct_series(folder, 4, ROWS, COLUMNS, hu=hu, signed=True, bits_stored=16, intercepts=0,
                               **kwargs)  # type: ignore[arg-type]
    return write_ct_series(folder, 4, ROWS, COLUMNS, hu=hu, bits_stored=12, intercepts=-1024,
                           **kwargs)  # type: ignore[arg-type]


def test_the_documented_transfer_syntaxes_are_decodable_here() -> None:
    decodable = set(decodable_transfer_syntaxes())
    for tsyntax in (ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless,
                    JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless,
                    JPEGLSNearLossless, JPEG2000Lossless, JPEG2000):
        assert tsyntax in decodable, tsyntax.name


# -- pydicom's encoders --------------------------------------------------------------------------------------------

LOSSLESS = {
    "rle": (RLELossless, _compress(RLELossless)),
    "jpeg-ls": (JPEGLSLossless, _compress(JPEGLSLossless)),
    "jpeg2000": (JPEG2000Lossless, _compress(JPEG2000Lossless)),
    "deflate": (DeflatedExplicitVRLittleEndian, _deflate),
}


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned12", "signed16"])
@pytest.mark.parametrize("codec", LOSSLESS)
def test_lossless_codecs_give_exact_hu(tmp_path: Path, codec: str, signed: bool) -> None:
    tsyntax, encode = LOSSLESS[codec]
    series = _series(tmp_path, signed, encode=encode)
    assert _transfer_syntax(series.files[0]) == tsyntax
    assert_matches(load_series(tmp_path), series)


def test_jpeg_ls_near_lossless_stays_within_its_bound(tmp_path: Path) -> None:
    series = _series(tmp_path, False, encode=_compress(JPEGLSNearLossless, jls_error=3))
    assert _transfer_syntax(series.files[0]) == JPEGLSNearLossless
    volume = load_series(tmp_path)
    _assert_close(volume, series, max_error=3, mean_error=3)


def test_jpeg2000_lossy(tmp_path: Path) -> None:
    series = _series(tmp_path, True, encode=_compress(JPEG2000, j2k_cr=[8]))
    assert _transfer_syntax(series.files[0]) == JPEG2000
    volume = load_series(tmp_path)
    _assert_close(volume, series, max_error=80, mean_error=10)  # observed: max 57, mean 6.8


def test_corrupt_codestream_is_a_pixel_decode_error(tmp_path: Path) -> None:
    series = _series(tmp_path, False, encode=_compress(JPEG2000Lossless))

    def cut_codestream(ds: Dataset) -> None:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        ds.PixelData = encapsulate([frame[:120]])

    edit_file(series.files[2], cut_codestream)
    with pytest.raises(PixelDecodeError, match=r"could not be decoded.*JPEG 2000|JPEG 2000.*could not be decoded"):
        load_series(tmp_path)


def test_a_decoder_that_panics_is_a_pixel_decode_error(tmp_path: Path) -> None:
    """pylibjpeg-rle is written in Rust: an RLE segment that decodes to more bytes than the frame holds makes it
    panic, and pyo3's PanicException is a BaseException, which ended the node's worker process (chaos fuzz run)."""
    series = _series(tmp_path, False, encode=_compress(RLELossless))
    overflowing = bytes([0x81, 7]) * (ROWS * COLUMNS // 64)  # replicate runs of 128 bytes: 2 x the segment

    def overflow(ds: Dataset) -> None:
        offsets = (64, 64 + len(overflowing))
        header = struct.pack("<16L", 2, *offsets, *([0] * 13))  # PS3.5 G.5: two segments of 16-bit samples
        ds.PixelData = encapsulate([header + overflowing * 2])

    edit_file(series.files[1], overflow)
    with pytest.raises(PixelDecodeError, match=r"could not be decoded.*RLE|RLE.*could not be decoded"):
        load_series(tmp_path)


def _assert_close(volume: Volume, series: CTSeries, max_error: float, mean_error: float) -> None:
    """Lossy: same geometry, HU within the codec's error (slices matched by position: a lossy encoder may give
    the images new SOP Instance UIDs, as dcmtk does)."""
    assert volume.shape[0] == len(series.files)
    for n in range(len(series.files)):
        k = int(np.argmin(np.linalg.norm(volume.positions - series.positions[n], axis=1)))
        np.testing.assert_allclose(volume.positions[k], series.positions[n])
        error = np.abs(volume.hu[k].astype(np.int32) - series.hu[n])
        assert error.max() <= max_error, error.max()
        assert error.mean() <= mean_error, error.mean()
        assert error.max() > 0  # it really was lossy


# -- dcmtk's encoders ------------------------------------------------------------------------------------------------


def _dcmtk(command: list[str]) -> Callable[[CTSeries], None]:
    def convert(series: CTSeries) -> None:
        tool = dcmtk_tool(command[0])
        for path in series.files:
            out = path.with_suffix(".tmp")
            subprocess.run([tool, *command[1:], str(path), str(out)], check=True, capture_output=True)
            out.replace(path)

    return convert


DCMTK_LOSSLESS = {
    "jpeg-lossless-sv1": (JPEGLosslessSV1, ["dcmcjpeg", "+e1"]),
    "jpeg-lossless-process14": (JPEGLossless, ["dcmcjpeg", "+el", "+sv", "6"]),
    "jpeg-ls-charls": (JPEGLSLossless, ["dcmcjpls", "+el"]),
    "rle-dcmtk": (RLELossless, ["dcmcrle"]),
    "deflate-dcmtk": (DeflatedExplicitVRLittleEndian, ["dcmconv", "+td"]),
    "big-endian": (ExplicitVRBigEndian, ["dcmconv", "+tb"]),
    "implicit-vr": ("1.2.840.10008.1.2", ["dcmconv", "+ti"]),
}


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned12", "signed16"])
@pytest.mark.parametrize("codec", DCMTK_LOSSLESS)
def test_dcmtk_lossless_encodings_give_exact_hu(tmp_path: Path, codec: str, signed: bool) -> None:
    tsyntax, command = DCMTK_LOSSLESS[codec]
    series = _series(tmp_path, signed)
    _dcmtk(command)(series)
    assert _transfer_syntax(series.files[0]) == tsyntax
    assert_matches(load_series(tmp_path), series)


def test_jpeg_baseline_8_bit(tmp_path: Path) -> None:
    """JPEG baseline holds 8-bit samples: stored 0..255 with slope 8 covers -1024..1016 HU."""
    hu = smooth_hu(4, low=-1024, high=1016, step=8)
    series = write_ct_series(tmp_path, 4, ROWS, COLUMNS, hu=hu, slopes=8, intercepts=-1024, bits_allocated=8,
                             bits_stored=8)
    _dcmtk(["dcmcjpeg", "+eb", "+q", "95"])(series)
    assert _transfer_syntax(series.files[0]) == JPEGBaseline8Bit
    _assert_close(load_series(tmp_path), series, max_error=80, mean_error=10)  # observed: max 60, mean 8.1


def test_jpeg_extended_12_bit(tmp_path: Path) -> None:
    series = _series(tmp_path, False)
    _dcmtk(["dcmcjpeg", "+ee", "+q", "95"])(series)
    assert _transfer_syntax(series.files[0]) == JPEGExtended12Bit
    _assert_close(load_series(tmp_path), series, max_error=16, mean_error=2)  # observed: max 8, mean 0.8


# -- multi-frame -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_series(shared_data: Path) -> tuple[list[Dataset], Volume]:
    """The real Siemens slices (UIDs the de-identification emptied filled in) and their single-frame load."""
    folder = shared_data / "siemens-ct-jpeg2000"
    study, series = generate_uid(), generate_uid()
    datasets = []
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID, ds.SOPClassUID = ds.file_meta.MediaStorageSOPInstanceUID, CTImageStorage
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        datasets.append(ds)
    random.Random(5).shuffle(datasets)
    return datasets, load_series(folder)


def _legacy(datasets: list[Dataset], tsyntax: str) -> Dataset:
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    return LegacyConvertedEnhancedCTImage(
        datasets, series_instance_uid=generate_uid(), series_number=90, sop_instance_uid=generate_uid(),
        instance_number=1, transfer_syntax_uid=tsyntax,
    )


def _assert_same_volume(multi: Volume, single: Volume, sop_instance_uid: str) -> None:
    np.testing.assert_array_equal(multi.hu, single.hu)
    np.testing.assert_allclose(multi.positions, single.positions)
    np.testing.assert_allclose(multi.spacing, single.spacing)
    assert multi.row_direction == single.row_direction
    assert multi.column_direction == single.column_direction
    np.testing.assert_allclose(multi.affine, single.affine)
    assert {s.sop_instance_uid for s in multi.slices} == {sop_instance_uid}
    assert sorted(s.frame_number for s in multi.slices) == list(range(1, single.shape[0] + 1))  # type: ignore[type-var]


@pytest.mark.parametrize("tsyntax", [ExplicitVRLittleEndian, JPEG2000Lossless], ids=["native", "jpeg2000"])
def test_legacy_converted_enhanced_ct(tmp_path: Path, real_series: tuple[list[Dataset], Volume],
                                      tsyntax: str) -> None:
    datasets, single = real_series
    image = _legacy(datasets, tsyntax)
    assert image.SOPClassUID == LegacyConvertedEnhancedCTImageStorage
    image.save_as(tmp_path / "legacy.dcm")
    volume = load_series(tmp_path)
    _assert_same_volume(volume, single, image.SOPInstanceUID)
    assert {s.sop_class_uid for s in volume.slices} == {LegacyConvertedEnhancedCTImageStorage}
    frames = image.PerFrameFunctionalGroupsSequence
    for k, ref in enumerate(volume.slices):
        written = frames[ref.frame_number - 1].PlanePositionSequence[0].ImagePositionPatient  # type: ignore[operator]
        np.testing.assert_allclose(volume.positions[k], [float(v) for v in written])
    assert volume.info.slice_thickness_mm == 3.0  # from the shared Pixel Measures functional group
    assert volume.info.convolution_kernel == "Br38f\\3"  # from the Unassigned Shared Converted Attributes


def test_enhanced_ct_with_per_frame_rescale_and_frames_out_of_order(
    tmp_path: Path, real_series: tuple[list[Dataset], Volume]
) -> None:
    """Enhanced CT Image Storage whose frames are stored in reverse order, with Pixel Measures and Pixel Value
    Transformation moved from the shared to the per-frame groups and a different intercept on every other
    frame (its stored values shifted to match): the HU must equal the single-frame load."""
    datasets, single = real_series
    image = _legacy(datasets, ExplicitVRLittleEndian)
    stored = image.pixel_array.astype(np.uint16)[::-1].copy()
    shared = image.SharedFunctionalGroupsSequence[0]
    per_frame = list(image.PerFrameFunctionalGroupsSequence)[::-1]
    measures, rescale = shared.PixelMeasuresSequence, shared.PixelValueTransformationSequence
    del shared.PixelMeasuresSequence
    del shared.PixelValueTransformationSequence
    for n, item in enumerate(per_frame):
        item.PixelMeasuresSequence = pydicom.sequence.Sequence([copy.deepcopy(measures[0])])
        transform = copy.deepcopy(rescale[0])
        if n % 2:
            transform.RescaleIntercept = -1124  # stored + 100 gives the same HU
            stored[n] += 100
        item.PixelValueTransformationSequence = pydicom.sequence.Sequence([transform])
    image.PerFrameFunctionalGroupsSequence = pydicom.sequence.Sequence(per_frame)
    image.BitsStored, image.HighBit = 16, 15  # stored + 100 may need more than 12 bits
    image.PixelData = stored.tobytes()
    image.SOPClassUID = image.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    image.save_as(tmp_path / "enhanced.dcm")
    volume = load_series(tmp_path)
    _assert_same_volume(volume, single, image.SOPInstanceUID)
    assert [s.frame_number for s in volume.slices] == list(range(1, 21))  # reverse storage, increasing z
    assert {s.sop_class_uid for s in volume.slices} == {EnhancedCTImageStorage}
