"""Files of one CT series -> `Volume` (Hounsfield units on a regular grid with its patient-space geometry).

`load_series` works in two passes. First it reads every file's header without pixel data (`dicom_headers`) to
choose the series, check it and sort its slices (`series_geometry`); nothing is decoded before the series is known
to be loadable. Then it decodes the slices one at a time into a preallocated array (`hu_decoding`), so a series
needs little more memory than its own volume (an int16 1000 x 512 x 512 series peaks at 1.12 times the volume's
size, interpreter included; see docs/benchmarks.md).

**HU** (PS3.3 C.11.1 Modality LUT Module, C.8.2.1 CT Image Module): ``HU = stored * RescaleSlope +
RescaleIntercept`` with each slice's (or frame's) own slope and intercept, which may differ between slices. Stored
values are taken as pydicom decodes them: the low BitsStored bits, sign-extended when PixelRepresentation is 1.
Voxels whose stored value equals PixelPaddingValue - or lies in the range it spans with PixelPaddingRangeLimit
(C.7.5.1.1.2) - are set to -1024 HU (air); padding is compared in stored-value space, before the rescale. The array
is ``int16`` when every slope and intercept is an integer and the result fits, else ``float32``. A Modality LUT
Sequence is refused (CT requires the rescale). MONOCHROME1 only inverts the display (C.7.6.3.1.2); its HU are
loaded unchanged and a warning says so.

**Transfer syntaxes**: whatever pydicom's decoders can decode in this environment (`decodable_transfer_syntaxes`).
With sarcoscreen's dependencies (pydicom 3, pylibjpeg with the openjpeg, libjpeg and rle plugins) these are:
Implicit and Explicit VR Little Endian, Explicit VR Big Endian, Deflated Explicit VR Little Endian, RLE Lossless,
JPEG Baseline (1.2.840.10008.1.2.4.50), JPEG Extended (.51), JPEG Lossless (.57), JPEG Lossless SV1 (.70),
JPEG-LS Lossless and Near-Lossless (.80, .81), JPEG 2000 Lossless and lossy (.90, .91) and High-Throughput JPEG 2000
(.201, .202, .203). All but HTJ2K are exercised by the tests with real encoded files (there is no HTJ2K encoder in
the test environment). Any other (JPEG XL, MPEG, ...) raises `UnsupportedTransferSyntaxError` naming it before
decoding starts. A bare data set without file meta is read as the little-endian syntax it parses as.

**Instances**: CT Image Storage (one slice per file), and Enhanced CT Image Storage (1.2.840.10008.5.1.4.1.1.2.1)
or Legacy Converted Enhanced CT Image Storage (1.2.840.10008.5.1.4.1.1.2.2) multi-frame instances, geometry and
rescale read per frame from the functional groups (C.7.6.16); `SliceRef.frame_number` records the frame.

**Selection** (`series_selection`): the files may hold non-image objects besides the images - an RT Structure
Set, SRs, segmentations, presentation states, key object selections, registrations, RT plans and doses. They are
set aside (a sentence per series in `Volume.warnings`: how many instances of which SOP class, the series' UID and
modality), and the one *image* series is loaded. Several image series - two CT series, or a CT next to an MR or
a secondary capture - are refused and listed unless ``series_instance_uid`` chooses one. What counts as an image
is stated in `series_selection`.

**Bad input** raises a subclass of `SeriesLoadError` (see `series_errors`), one per condition: no DICOM files,
no image among them, several image series, a series not found, non-CT modality, colour images, missing or
malformed required attributes, an undecodable transfer syntax or corrupt pixel data, and the geometry refusals of
`series_geometry` - fewer than two slices (a single slice is refused: screening needs a volume), mixed
orientations, mixed pixel grids, duplicate positions, gantry tilt (*rejected* with its angle, never resampled),
missing slices and non-uniform spacing - and the values no geometry or HU can come from: a PixelSpacing or
SliceThickness that is not positive, a RescaleSlope of 0, an orientation that is not two orthogonal unit vectors
(in any slice). Two checks protect the memory before anything is allocated: native pixel data shorter than Rows x
Columns x BitsAllocated declare (`PixelDataLengthError`, e.g. a header claiming 65535 x 65535), and a volume larger
than ``max_volume_bytes`` (`VolumeTooLargeError`, 8 GiB by default; the node's ``worker.max_volume_mb``). Every
refusal is a problem of the input: loading the same files again gives the same error. Tolerated conditions are
corrected and described in `Volume.warnings`: localizers excluded, unreadable or non-DICOM files skipped (when the
remaining files form a valid series; the warning says how many), non-image objects and image series not chosen set
aside, duplicate copies of one SOP instance dropped, missing UIDs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from sarcoscreen.inference.dicom_files import find_dicom_files
from sarcoscreen.inference.dicom_headers import (
    FrameHeader,
    InstanceHeader,
    NotDicomError,
    read_header,
)
from sarcoscreen.inference.hu_decoding import (
    DEFAULT_MAX_VOLUME_BYTES,
    PADDING_HU,
    Progress,
    check_pixel_encoding,
    check_volume_size,
    decodable_transfer_syntaxes,
    decode_hu,
)
from sarcoscreen.inference.series_errors import (
    NoDicomFilesError,
    NotCTError,
)
from sarcoscreen.inference.series_geometry import SliceGrid, arrange_slices
from sarcoscreen.inference.series_selection import choose_series
from sarcoscreen.inference.volume import SeriesInfo, SliceRef, Volume

__all__ = ["DEFAULT_MAX_VOLUME_BYTES", "PADDING_HU", "decodable_transfer_syntaxes", "load_series"]

_NAMES_SHOWN = 5


def load_series(
    path: Path | str | Sequence[Path | str],
    *,
    progress: Progress | None = None,
    series_instance_uid: str | None = None,
    max_volume_bytes: int = DEFAULT_MAX_VOLUME_BYTES,
) -> Volume:
    """Load one CT series from a folder (searched recursively: a case folder with ``ct/`` and ``rtstruct/``
    subfolders is one input) or a list of files.

    Which files of a folder are read is `dicom_files.find_dicom_files`'s rule (hidden files and folders and
    DICOMDIR are left out). Files that are not DICOM, and DICOM files that cannot be parsed, are skipped with a
    warning in `Volume.warnings` that says how many, as long as the remaining files form a valid series.
    Non-image objects (SR, RT Structure Set, SEG, ...) are set aside, and so are the image series not chosen,
    each with a warning. When the files hold several image series, `MultipleSeriesError` lists
    them unless `series_instance_uid` chooses one. `progress(done, total)` is called after each decoded slice.
    A volume whose HU array would take more than `max_volume_bytes` is refused before it is allocated
    (`VolumeTooLargeError`).

    Raises a `SeriesLoadError` subclass naming the reason when the files are not one loadable CT volume.
    """
    files = _list_files(path)
    headers, skipped = _read_headers(files)
    if not headers:
        note = f"; {skipped[0]}" if skipped else ""
        raise NoDicomFilesError(f"no DICOM image files found in {_describe(path)}{note}")
    selection = choose_series(headers, series_instance_uid)
    warnings = [*skipped, *selection.notes()]
    chosen = _drop_duplicate_copies(selection.headers, warnings)
    _require_ct(chosen)
    grid = arrange_slices([frame for _, frames in chosen for frame in frames])
    warnings += grid.warnings
    instances = list(dict.fromkeys(frame.instance for frame in grid.frames))
    check_pixel_encoding(instances, warnings)
    check_volume_size(grid, max_volume_bytes)
    hu = decode_hu(grid, progress)
    info = grid.frames[0].instance.info
    _warn_missing_uids(grid, info, warnings)
    return Volume(
        hu=hu, spacing=grid.spacing, row_direction=grid.row_direction, column_direction=grid.column_direction,
        positions=grid.positions,
        slices=tuple(SliceRef(f.instance.sop_instance_uid, f.instance.sop_class_uid, f.frame_number)
                     for f in grid.frames),
        info=info, warnings=tuple(warnings),
    )


# -- files and headers ------------------------------------------------------------------------------------------


def _describe(path: Path | str | Sequence[Path | str]) -> str:
    return str(path) if isinstance(path, str | Path) else f"the {len(path)} files given"


def _list_files(path: Path | str | Sequence[Path | str]) -> list[Path]:
    if isinstance(path, str | Path) and not (Path(path).is_file() or Path(path).is_dir()):
        raise NoDicomFilesError(f"{path} does not exist")
    return find_dicom_files(path)


def _names(paths: list[str]) -> str:
    more = f", ... ({len(paths) - _NAMES_SHOWN} more)" if len(paths) > _NAMES_SHOWN else ""
    return ", ".join(paths[:_NAMES_SHOWN]) + more


def _read_headers(files: list[Path]) -> tuple[list[tuple[InstanceHeader, list[FrameHeader]]], list[str]]:
    headers = []
    not_dicom: list[str] = []
    unreadable: list[str] = []
    for path in files:
        try:
            header = read_header(path)
        except NotDicomError:
            not_dicom.append(path.name)
            continue
        except Exception as exc:  # a DICOM file pydicom cannot parse: truncated, corrupt, unreadable
            unreadable.append(f"{path.name} ({type(exc).__name__})")
            continue
        if header is not None:
            headers.append(header)
    skipped = []
    if not_dicom:
        skipped.append(f"skipped {len(not_dicom)} file(s) that are not DICOM: {_names(not_dicom)}")
    if unreadable:
        skipped.append(f"skipped {len(unreadable)} DICOM file(s) that could not be read: {_names(unreadable)}")
    return headers, skipped


def _drop_duplicate_copies(
    headers: list[tuple[InstanceHeader, list[FrameHeader]]], warnings: list[str]
) -> list[tuple[InstanceHeader, list[FrameHeader]]]:
    """Keep one file per SOP Instance UID: copies of one instance are the same image (PS3.3 C.12.1.1.1)."""
    seen: set[str] = set()
    kept = []
    for header in headers:
        uid = header[0].sop_instance_uid
        if uid and uid in seen:
            continue
        seen.add(uid)
        kept.append(header)
    if len(kept) < len(headers):
        warnings.append(f"ignored {len(headers) - len(kept)} duplicate copy(ies) of the same SOP instance(s)")
    return kept


def _require_ct(headers: list[tuple[InstanceHeader, list[FrameHeader]]]) -> None:
    modalities = Counter(instance.modality or "no Modality" for instance, _ in headers)
    if set(modalities) != {"CT"}:
        other = next(m for m, _ in modalities.most_common() if m != "CT")
        found = ", ".join(f"{m} ({n} files)" for m, n in modalities.most_common())
        raise NotCTError(f"the series is not CT: Modality (0008,0060) is {found}; only CT can be screened", other)


def _warn_missing_uids(grid: SliceGrid, info: SeriesInfo, warnings: list[str]) -> None:
    no_uid = sum(not f.instance.sop_instance_uid for f in grid.frames)
    if no_uid:
        warnings.append(
            f"{no_uid} slice(s) have no SOP Instance UID: derived objects (DICOM-SEG) cannot reference them"
        )
    if not info.series_instance_uid:
        warnings.append("the files have no SeriesInstanceUID; they were taken as one series")
