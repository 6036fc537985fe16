"""Why a set of DICOM files could not be loaded as one CT volume: one exception type per condition.

Every type derives from `SeriesLoadError`, so callers that only report the reason catch that one class; callers
that route (the node skips a non-CT series but retries an unreadable one) catch the specific type. Messages state
the reason in words and carry no patient names or identifiers; a UID or a file name appears only where it is
needed to find the offending input.
"""

from __future__ import annotations

__all__ = [
    "ColourImageError",
    "DuplicatePositionError",
    "GantryTiltError",
    "GeometryError",
    "InvalidOrientationError",
    "MissingSlicesError",
    "MissingTagError",
    "MixedOrientationError",
    "MixedPixelGridError",
    "MultipleSeriesError",
    "NoDicomFilesError",
    "NoImageSeriesError",
    "NonUniformSpacingError",
    "NotCTError",
    "PixelDecodeError",
    "SeriesLoadError",
    "SeriesNotFoundError",
    "TooFewSlicesError",
    "UnsupportedImageError",
    "UnsupportedTransferSyntaxError",
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


class GeometryError(SeriesLoadError):
    """The images do not form one regular grid of parallel, evenly spaced slices."""


class TooFewSlicesError(GeometryError):
    """Fewer than two image slices remain: one slice has no slice spacing and cannot be screened."""


class InvalidOrientationError(GeometryError):
    """ImageOrientationPatient is not a pair of orthogonal unit vectors."""


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
