"""Stored pixel values of a validated series -> one array of Hounsfield units, decoded slice by slice.

The series loader calls `check_pixel_encoding` before anything is decoded (so an unsupported encoding, or native
pixel data shorter than Rows x Columns x BitsAllocated x frames declare, is refused early), `check_volume_size`
before the volume is allocated, and `decode_hu` once the slices are sorted (`series_geometry.SliceGrid`). The
conversion follows PS3.3 C.11.1 (Modality LUT Module) and C.8.2.1 (CT Image Module): ``HU = stored * RescaleSlope +
RescaleIntercept`` per frame; padding (C.7.5.1.1.2) is compared in stored-value space and becomes `PADDING_HU`.
Each frame is decoded by pydicom from the file path (only the pixel data of that frame is read), converted and
written into its slot of one preallocated array, so the peak memory is the output array plus one slice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import get_decoder, iter_pixels, pixel_array
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from sarcoscreen.inference.dicom_headers import FrameHeader, InstanceHeader, transfer_syntax_name
from sarcoscreen.inference.error_text import error_text
from sarcoscreen.inference.series_errors import (
    ColourImageError,
    MissingTagError,
    PixelDataLengthError,
    PixelDecodeError,
    UnsupportedImageError,
    UnsupportedTransferSyntaxError,
    VolumeTooLargeError,
)
from sarcoscreen.inference.series_geometry import SliceGrid

__all__ = [
    "DEFAULT_MAX_VOLUME_BYTES",
    "PADDING_HU",
    "Progress",
    "check_pixel_encoding",
    "check_volume_size",
    "decodable_transfer_syntaxes",
    "decode_hu",
    "hu_dtype",
]

PADDING_HU = -1024
DEFAULT_MAX_VOLUME_BYTES = 8 << 30
"""The largest HU array `load_series` allocates unless told otherwise (8 GiB: 4000 slices of 1024 x 1024 int16)."""
Progress = Callable[[int, int], None]
_NAMES_SHOWN = 5
_INT16 = np.iinfo(np.int16)


def decodable_transfer_syntaxes() -> list[UID]:
    """Transfer syntaxes whose pixel data pydicom can decode with the plugins installed here."""
    from pydicom.uid import AllTransferSyntaxes

    decodable = []
    for uid in AllTransferSyntaxes:
        try:
            if get_decoder(uid).is_available:
                decodable.append(UID(uid))
        except NotImplementedError:
            continue
    return decodable


# -- checks -----------------------------------------------------------------------------------------------


def check_pixel_encoding(instances: list[InstanceHeader], warnings: list[str]) -> None:
    """Refuse, before decoding anything, what cannot become HU: no pixel data, colour, LUTs, undecodable syntax."""
    lacking = [i.path.name for i in instances if i.pixel_keyword is None]
    if lacking:
        raise MissingTagError(
            f"PixelData (7FE0,0010) is missing in {len(lacking)} of {len(instances)} files ({_names(lacking)})",
            "PixelData",
        )
    for instance in instances:
        if instance.pixel_keyword != "PixelData":
            raise UnsupportedImageError(
                f"{instance.path.name} holds {instance.pixel_keyword}, not integer PixelData; CT must be integer "
                "stored values with a rescale to HU"
            )
        if instance.samples_per_pixel != 1 or instance.photometric_interpretation not in {"MONOCHROME1",
                                                                                           "MONOCHROME2"}:
            raise ColourImageError(
                f"{instance.path.name} is not a greyscale image: PhotometricInterpretation "
                f"{instance.photometric_interpretation or '(absent)'}, SamplesPerPixel {instance.samples_per_pixel}; "
                "CT must be MONOCHROME2 with one sample per pixel"
            )
        for keyword, value in (("Rows", instance.rows), ("Columns", instance.columns),
                               ("BitsAllocated", instance.bits_allocated), ("BitsStored", instance.bits_stored)):
            if not value:
                raise MissingTagError(f"{keyword} is missing in {instance.path.name}", keyword)
        _require_pixel_length(instance)
        if instance.has_modality_lut_sequence:
            raise UnsupportedImageError(
                f"{instance.path.name} has a Modality LUT Sequence (0028,3000); CT HU must come from RescaleSlope "
                "and RescaleIntercept (PS3.3 C.8.2.1), a lookup table is not supported"
            )
    for tsyntax in sorted({i.transfer_syntax_uid for i in instances}):
        _require_decodable(tsyntax)
    inverted = sum(i.photometric_interpretation == "MONOCHROME1" for i in instances)
    if inverted:
        warnings.append(
            f"{inverted} image(s) are MONOCHROME1: that inverts only the display; HU are loaded unchanged"
        )


def _require_pixel_length(instance: InstanceHeader) -> None:
    """Native pixel data must hold what Rows x Columns x SamplesPerPixel x BitsAllocated x NumberOfFrames declare
    (PS3.5 8.1.1); encapsulated pixel data (undefined length) is checked by its decoder."""
    if instance.pixel_length is None:
        return
    rows, columns, bits = instance.rows or 0, instance.columns or 0, instance.bits_allocated or 0
    frame_bits = rows * columns * instance.samples_per_pixel * bits
    declared = (frame_bits * instance.number_of_frames + 7) // 8
    if instance.pixel_length < declared:
        frames = f", {declared} for {instance.number_of_frames} frames" if instance.number_of_frames > 1 else ""
        per_frame = (frame_bits + 7) // 8
        raise PixelDataLengthError(
            f"Rows x Columns {rows} x {columns} of {bits} bits declare {per_frame} bytes per frame{frames}, "
            f"but the pixel data holds {instance.pixel_length} bytes ({instance.path.name}); the header does not "
            "describe the pixel data"
        )


def _require_decodable(tsyntax: str) -> None:
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise UnsupportedTransferSyntaxError(
            f"the pixel data is encoded with transfer syntax {transfer_syntax_name(tsyntax)}, which pydicom cannot "
            "decode", tsyntax
        ) from None
    if not decoder.is_available:
        missing = "; ".join(str(m) for m in decoder.missing_dependencies) or "no plugin available"
        raise UnsupportedTransferSyntaxError(
            f"the pixel data is encoded with transfer syntax {transfer_syntax_name(tsyntax)}, and no decoder for it "
            f"is installed ({missing})", tsyntax
        )


# -- decoding ------------------------------------------------------------------------------------------------------


def hu_dtype(frames: tuple[FrameHeader, ...]) -> np.dtype:
    """``int16`` when every slope and intercept is an integer, else ``float32`` (an int16 array becomes float32
    later if a slice's HU do not fit)."""
    integral = all(float(f.slope).is_integer() and float(f.intercept).is_integer()  # type: ignore[arg-type]
                   for f in frames)
    return np.dtype(np.int16 if integral else np.float32)


def _size(n: int) -> str:
    if n < 1 << 20:
        return f"{n} bytes"
    if n < 1 << 30:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n / (1 << 30):.1f} GiB"


def check_volume_size(grid: SliceGrid, limit_bytes: int) -> None:
    """Refuse, before allocating it, a volume whose HU array would take more than `limit_bytes`."""
    frames = grid.frames
    rows, columns = frames[0].instance.rows or 0, frames[0].instance.columns or 0
    dtype = hu_dtype(frames)
    needed = len(frames) * rows * columns * dtype.itemsize
    if needed > limit_bytes:
        raise VolumeTooLargeError(
            f"the volume of {len(frames)} slices of {rows} x {columns} pixels would take {_size(needed)} as "
            f"{dtype.name} HU, more than the limit of {_size(limit_bytes)}", needed, limit_bytes
        )


def decode_hu(grid: SliceGrid, progress: Progress | None) -> np.ndarray:
    """Decode every frame into its sorted slot of one preallocated array, converting to HU slice by slice."""
    frames = grid.frames
    rows, columns = frames[0].instance.rows, frames[0].instance.columns
    hu = np.empty((len(frames), rows, columns), hu_dtype(frames))  # type: ignore[arg-type]
    slots: dict[InstanceHeader, list[tuple[int, FrameHeader]]] = {}
    for k, frame in enumerate(frames):
        slots.setdefault(frame.instance, []).append((k, frame))
    done = 0
    if progress is not None:
        progress(0, len(frames))
    for instance, targets in slots.items():
        targets.sort(key=lambda target: target[1].index)
        for (k, frame), stored in zip(targets, _stored_frames(instance, [f.index for _, f in targets]), strict=True):
            if stored.shape != (rows, columns):
                raise PixelDecodeError(
                    f"{instance.path.name} decoded to shape {stored.shape}, expected {rows} x {columns}"
                )
            hu = _put_slice(hu, k, stored, frame)
            done += 1
            if progress is not None:
                progress(done, len(frames))
    return hu


def _stored_frames(instance: InstanceHeader, indices: list[int]) -> Iterator[np.ndarray]:
    """Stored values of the frames `indices` of `instance`, decoded one frame at a time from the file."""
    options = {} if instance.has_file_meta else {"transfer_syntax_uid": UID(instance.transfer_syntax_uid)}
    try:
        if instance.transfer_syntax_uid == DeflatedExplicitVRLittleEndian:
            # the whole data set is deflated: pydicom cannot seek to the pixel data in the file
            src: Path | pydicom.Dataset = pydicom.dcmread(instance.path)
        else:
            src = instance.path
        if instance.number_of_frames == 1:
            yield pixel_array(src, **options)
        else:
            yield from iter_pixels(src, indices=indices, **options)
    except OSError as exc:
        if exc.errno is not None:  # reading the file failed (disk, network mount): not a problem of the data
            raise
        raise _undecodable(instance, exc) from exc
    except Exception as exc:
        raise _undecodable(instance, exc) from exc
    except BaseException as exc:
        # A decoder written in Rust (pylibjpeg-rle) panics on some damaged data: pyo3's PanicException derives
        # from BaseException, so that it would end the worker process. It is a problem of the data like any other.
        if type(exc).__name__ != "PanicException":
            raise  # KeyboardInterrupt, SystemExit, GeneratorExit (the caller closing this generator)
        raise _undecodable(instance, exc) from None


def _undecodable(instance: InstanceHeader, exc: BaseException) -> PixelDecodeError:
    return PixelDecodeError(
        f"the pixel data of {instance.path.name} ({transfer_syntax_name(instance.transfer_syntax_uid)}) could not be "
        f"decoded: {error_text(exc)}"
    )


def _put_slice(hu: np.ndarray, k: int, stored: np.ndarray, frame: FrameHeader) -> np.ndarray:
    """Write slice `k` as HU; returns the array (a float32 copy if an int16 one cannot hold this slice)."""
    slope, intercept = float(frame.slope), float(frame.intercept)  # type: ignore[arg-type]
    padding = frame.instance.padding
    pad = None if padding is None else (stored >= padding[0]) & (stored <= padding[1])
    if hu.dtype == np.int16:
        values = stored.astype(np.int64 if stored.dtype.itemsize >= 4 else np.int32)
        if slope != 1:
            values *= int(slope)
        if intercept:
            values += int(intercept)
        if pad is not None:
            values[pad] = PADDING_HU
        if values.size and (values.min() < _INT16.min or values.max() > _INT16.max):
            hu = _as_float32(hu)
        hu[k] = values
        return hu
    values = stored.astype(np.float64) * slope + intercept
    if pad is not None:
        values[pad] = PADDING_HU
    hu[k] = values
    return hu


def _as_float32(hu: np.ndarray) -> np.ndarray:
    """A float32 copy of `hu` (slots not yet decoded are overwritten later): integer HU beyond int16, rare."""
    return hu.astype(np.float32)


def _names(paths: list[str]) -> str:
    more = f", ... ({len(paths) - _NAMES_SHOWN} more)" if len(paths) > _NAMES_SHOWN else ""
    return ", ".join(paths[:_NAMES_SHOWN]) + more
