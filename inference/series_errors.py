"""Why a set of DICOM files could not be loaded as one CT volume: one exception type per condition.

Every type derives from `SeriesLoadError`, so callers that only report the reason catch that one class; callers
that route catch the specific type. Each is a problem of the input: loading the same files again gives the same
error, so the node's worker fails such a job at once instead of retrying it (docs/node.md, "Failed attempts"). An
I/O error while decoding pixel data (an `OSError` with an errno) is not one of them: it propagates as it is (a file
whose header cannot be read at all is skipped with a warning, as a corrupt one is). Messages state the
reason in words and carry no patient names or identifiers; a UID or a file name appears only where it is needed to
find the offending input, and a value only when it is geometry (spacing, orientation, positions).
"""

from __future__ import annotations

__all__ = [
    "ColourImageError",
    "DuplicatePositionError",
    "GantryTiltError",
    "GeometryError",
    "InvalidOrientationError",
    "InvalidRescaleError",
    "InvalidSpacingError",
    "MissingSlicesError",
    "MissingTagError",
    "MixedOrientationError",
    "MixedPixelGridError",
    "MultipleSeriesError",
    "NoDicomFilesError",
    "NoImageSeriesError",
    "NonUniformSpacingError",
    "NotCTError",
    "PixelDataLengthError",
    "PixelDecodeError",
    "SeriesLoadError",
    "SeriesNotFoundError",
    "TooFewSlicesError",
    "UnsupportedImageError",
    "UnsupportedTransferSyntaxError",
    "VolumeTooLargeError",
]


class SeriesLoadError(Exception):
    """The files could not be loaded as one CT volume; the message says why."""


class NoDicomFilesError(SeriesLoadError):
    """The path holds no readable DICOM image file (or does not exist)."""


class NoImageSeriesError(NoDicomFilesError):
    """The DICOM files (or the series chosen) hold no image, only non-image objects: SR, RT Structure Set,
    segmentations, presentation states, ... (the rule is in `series_selection`)."""


class MultipleSeriesError(SeriesLoadError):
    """The files hold more than one image series and none was chosen; `series_instance_uids` lists them
    (non-image objects such as an RT Structure Set or an SR are set aside and do not count)."""

    def __init__(self, message: str, series_instance_uids: tuple[str, ...]) -> None:
        super().__init__(message)
        self.series_instance_uids = series_instance_uids


class SeriesNotFoundError(SeriesLoadError):
    """The series chosen with ``series_instance_uid`` is not among the files."""


class NotCTError(SeriesLoadError):
    """The series' Modality (0008,0060) is not CT."""

    def __init__(self, message: str, modality: str) -> None:
        super().__init__(message)
        self.modality = modality


class ColourImageError(SeriesLoadError):
    """The images are not greyscale (PhotometricInterpretation / SamplesPerPixel): CT must be one sample of
    MONOCHROME2 (or MONOCHROME1)."""


class UnsupportedImageError(SeriesLoadError):
    """The pixel encoding is one this loader does not turn into HU (e.g. a Modality LUT Sequence)."""


class MissingTagError(SeriesLoadError):
    """A required attribute is missing or malformed; `keyword` names it."""

    def __init__(self, message: str, keyword: str) -> None:
        super().__init__(message)
        self.keyword = keyword


class UnsupportedTransferSyntaxError(SeriesLoadError):
    """The pixel data is encoded in a transfer syntax that cannot be decoded here; `transfer_syntax_uid` names it."""

    def __init__(self, message: str, transfer_syntax_uid: str) -> None:
        super().__init__(message)
        self.transfer_syntax_uid = transfer_syntax_uid


class PixelDecodeError(SeriesLoadError):
    """The pixel data of an image could not be decoded (truncated or corrupt file)."""


class PixelDataLengthError(PixelDecodeError):
    """Rows, Columns, BitsAllocated and NumberOfFrames declare more bytes than the (native) pixel data holds: the
    header does not describe the pixel data, and nothing is allocated for it."""


class InvalidRescaleError(SeriesLoadError):
    """RescaleSlope (0028,1053) is 0: every voxel would have the same HU (PS3.3 C.11.1.1.2)."""

    keyword = "RescaleSlope"


class VolumeTooLargeError(SeriesLoadError):
    """The volume the header declares would take more memory than the limit given to `load_series`; checked before
    anything is allocated. `needed_bytes` and `limit_bytes` say by how much."""

    def __init__(self, message: str, needed_bytes: int, limit_bytes: int) -> None:
        super().__init__(message)
        self.needed_bytes = needed_bytes
        self.limit_bytes = limit_bytes


class GeometryError(SeriesLoadError):
    """The images do not form one regular grid of parallel, evenly spaced slices."""


class TooFewSlicesError(GeometryError):
    """Fewer than two image slices remain: one slice has no slice spacing and cannot be screened."""


class InvalidOrientationError(GeometryError):
    """ImageOrientationPatient of an image is not a pair of orthogonal unit vectors."""

    keyword = "ImageOrientationPatient"


class InvalidSpacingError(GeometryError):
    """PixelSpacing is not two positive numbers, or SliceThickness is present and not a positive number (the
    engines divide by the spacing); `keyword` names the attribute."""

    def __init__(self, message: str, keyword: str) -> None:
        super().__init__(message)
        self.keyword = keyword


class MixedOrientationError(GeometryError):
    """The images have different orientations (and the minority are too many to be localizers)."""


class MixedPixelGridError(GeometryError):
    """The images differ in Rows, Columns or PixelSpacing."""


class DuplicatePositionError(GeometryError):
    """Different SOP instances lie at the same position along the slice normal."""


class GantryTiltError(GeometryError):
    """The slice positions do not advance along the slice normal (gantry tilt); such series are rejected."""

    def __init__(self, message: str, angle_deg: float) -> None:
        super().__init__(message)
        self.angle_deg = angle_deg


class MissingSlicesError(GeometryError):
    """A jump in slice spacing larger than 1.5 times the median: slices are missing."""


class NonUniformSpacingError(GeometryError):
    """The slice spacing varies beyond the tolerance (0.1 mm or 5 % of the median, whichever is smaller)."""
