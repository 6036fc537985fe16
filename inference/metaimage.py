"""MetaImage (ITK MetaIO) files: a ``.mhd`` text header with its ``.raw`` / ``.zraw`` data, or one ``.mha`` file.

The format (https://itk.org/Wiki/ITK/MetaIO/Documentation) is a list of ``Key = Value`` lines ending with
``ElementDataFile``, which names the data file, or ``LOCAL`` when the data follow the header in the same file.
This reader handles what MetaIO writes for images:

* ``NDims``, ``DimSize`` (fastest axis first: x, y, z), ``ElementType`` (`ELEMENT_TYPES`),
  ``ElementNumberOfChannels``, ``ElementSpacing`` (or ``ElementSize`` when the spacing is absent), ``Offset``
  (alias ``Position``, ``Origin``), ``TransformMatrix`` (alias ``Rotation``, ``Orientation``),
  ``BinaryDataByteOrderMSB`` / ``ElementByteOrderMSB``, ``CompressedData`` (zlib or gzip deflate stream,
  ``CompressedDataSize`` optional), ``HeaderSize`` (bytes to skip in the data file; -1: the data end the file);
* data in one file (a name relative to the header, or ``LOCAL``). A ``LIST`` of files or a file-name pattern is
  refused with `MetaImageError`.

**Array order.** The array is returned in C order with the axes reversed relative to ``DimSize``: ``(z, y, x)``
for a 3-D image (and a trailing channel axis when ``ElementNumberOfChannels`` > 1), as it lies in the file.

**Geometry.** ``Offset`` is the physical position of the first voxel's centre; row ``a`` of ``TransformMatrix``
(row-major, as ITK's MetaImageIO reads it) is the direction cosine of file axis ``a``. Coordinates are returned as
written: ITK writes medical images in LPS (its ``AnatomicalOrientation = RAI`` is the identity direction in LPS);
``AnatomicalOrientation`` is recorded, not applied - ITK ignores it too. `MetaImageHeader.affine` maps array
indices ``(z, y, x, 1)`` to physical coordinates ``(x, y, z, 1)``, like `Volume.affine` does for a series.

The element type is taken from the header as written (a label map written as ``MET_SHORT`` comes back as
``int16``; converting it is the caller's decision). Compressed data are inflated straight into the result array,
so reading needs about one array of memory plus the compressed bytes' read buffer.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, TypeVar

import numpy as np

__all__ = ["ELEMENT_TYPES", "MetaImage", "MetaImageError", "MetaImageHeader", "read_metaimage",
           "read_metaimage_header"]

ELEMENT_TYPES: Mapping[str, np.dtype] = MappingProxyType({
    "MET_CHAR": np.dtype(np.int8),
    "MET_UCHAR": np.dtype(np.uint8),
    "MET_SHORT": np.dtype(np.int16),
    "MET_USHORT": np.dtype(np.uint16),
    "MET_INT": np.dtype(np.int32),
    "MET_UINT": np.dtype(np.uint32),
    "MET_LONG": np.dtype(np.int32),  # 4 bytes in MetaIO (metaTypes.h), whatever the platform's long
    "MET_ULONG": np.dtype(np.uint32),
    "MET_LONG_LONG": np.dtype(np.int64),
    "MET_ULONG_LONG": np.dtype(np.uint64),
    "MET_FLOAT": np.dtype(np.float32),
    "MET_DOUBLE": np.dtype(np.float64),
})
"""MetaIO element types and the numpy types they are read as (little-endian unless the header says MSB)."""

_MAX_HEADER_BYTES = 1 << 20
_CHUNK = 1 << 20
_ALIASES = {
    "offset": ("Offset", "Position", "Origin"),
    "transform": ("TransformMatrix", "Rotation", "Orientation"),
    "spacing": ("ElementSpacing", "ElementSize"),
    "msb": ("BinaryDataByteOrderMSB", "ElementByteOrderMSB"),
}
_Number = TypeVar("_Number", int, float)
_TRUE = {"true", "t", "1", "yes"}
_FALSE = {"false", "f", "0", "no"}


class MetaImageError(Exception):
    """A file is not a MetaImage this reader can read, or its data do not match its header; the message says
    why."""


@dataclass(frozen=True)
class MetaImageHeader:
    """A MetaImage header, parsed and checked. Per-axis fields are in file order (x, y, z) as written;
    `shape`, `spacing` and `affine` are in array order (z, y, x)."""

    path: Path
    """The header file (``.mhd`` or ``.mha``)."""
    fields: Mapping[str, str]
    """Every ``Key = Value`` line as written, in order (``ElementDataFile`` included)."""
    dim_size: tuple[int, ...]
    element_type: str
    channels: int
    element_spacing: tuple[float, ...]
    offset: tuple[float, ...]
    transform_matrix: tuple[float, ...]
    """Row-major ``NDims x NDims``; row ``a`` is the direction cosine of file axis ``a``."""
    big_endian: bool
    compressed: bool
    compressed_size: int | None
    data_file: Path
    """The file holding the data (the header file itself for ``LOCAL``)."""
    data_offset: int
    """Where the data start in `data_file`, in bytes; -1: they end the file (``HeaderSize = -1``)."""

    @property
    def ndims(self) -> int:
        return len(self.dim_size)

    @property
    def dtype(self) -> np.dtype:
        """The element type in the file's byte order."""
        base = ELEMENT_TYPES[self.element_type]
        return base.newbyteorder(">" if self.big_endian else "<")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the array: ``DimSize`` reversed, plus a channel axis when there are several channels."""
        return tuple(reversed(self.dim_size)) + ((self.channels,) if self.channels > 1 else ())

    @property
    def data_bytes(self) -> int:
        """Size of the uncompressed data in bytes."""
        return math.prod(self.dim_size) * self.channels * self.dtype.itemsize

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel spacing in array-axis order (``(dz, dy, dx)`` for 3-D)."""
        return tuple(reversed(self.element_spacing))

    @property
    def direction(self) -> np.ndarray:
        """``NDims x NDims`` matrix whose column ``a`` is the direction of file axis ``a``."""
        n = self.ndims
        return np.asarray(self.transform_matrix, dtype=np.float64).reshape(n, n).T

    @property
    def affine(self) -> np.ndarray:
        """``(NDims + 1)`` square matrix mapping array indices (z, y, x, 1) to physical coordinates (x, y, z, 1)."""
        n = self.ndims
        m = np.eye(n + 1)
        direction = self.direction
        for axis in range(n):  # array axis -> file axis n - 1 - axis
            file_axis = n - 1 - axis
            m[:n, axis] = direction[:, file_axis] * self.element_spacing[file_axis]
        m[:n, n] = self.offset
        return m


@dataclass(frozen=True, eq=False)
class MetaImage:
    """A MetaImage's data with its header."""

    header: MetaImageHeader
    array: np.ndarray
    """In array order (see the module docstring), native byte order, writable."""

    @property
    def spacing(self) -> tuple[float, ...]:
        return self.header.spacing

    @property
    def affine(self) -> np.ndarray:
        return self.header.affine


def read_metaimage(path: Path | str) -> MetaImage:
    """Read the MetaImage whose header is `path` (``.mhd`` or ``.mha``); `MetaImageError` when it cannot."""
    header = read_metaimage_header(path)
    array = _read_data(header).view(header.dtype)
    if not header.dtype.isnative:
        array.byteswap(inplace=True)  # in place: no second copy of the data
        array = array.view(header.dtype.newbyteorder("="))
    return MetaImage(header, array.reshape(header.shape))


def read_metaimage_header(path: Path | str) -> MetaImageHeader:
    """Parse and check the header of the MetaImage `path`, without reading its data."""
    path = Path(path)
    fields, data_start = _header_lines(path)
    lookup = {key.lower(): value for key, value in fields.items()}

    def get(*names: str) -> str | None:
        return next((lookup[n.lower()] for n in names if n.lower() in lookup), None)

    def need(name: str) -> str:
        value = get(name)
        if value is None:
            raise MetaImageError(f"{path.name}: the header has no {name}")
        return value

    object_type = get("ObjectType")
    if object_type is not None and object_type.strip().lower() != "image":
        raise MetaImageError(f"{path.name}: ObjectType is {object_type!r}; only images are read")
    ndims = _integers(path, "NDims", need("NDims"), 1)[0]
    if not 1 <= ndims <= 10:
        raise MetaImageError(f"{path.name}: NDims {ndims} is not a number of dimensions")
    dim_size = _integers(path, "DimSize", need("DimSize"), ndims)
    if any(d < 1 for d in dim_size):
        raise MetaImageError(f"{path.name}: DimSize {dim_size} has an axis without voxels")
    element_type = need("ElementType").strip()
    if element_type not in ELEMENT_TYPES:
        raise MetaImageError(f"{path.name}: ElementType {element_type} is not supported "
                             f"(supported: {', '.join(ELEMENT_TYPES)})")
    channels_text = get("ElementNumberOfChannels")
    channels = 1 if channels_text is None else _integers(path, "ElementNumberOfChannels", channels_text, 1)[0]
    if channels < 1:
        raise MetaImageError(f"{path.name}: ElementNumberOfChannels {channels} must be at least 1")
    spacing_text = get(*_ALIASES["spacing"])
    spacing = (1.0,) * ndims if spacing_text is None else _floats(path, "ElementSpacing", spacing_text, ndims)
    if any(not math.isfinite(s) or s <= 0 for s in spacing):
        raise MetaImageError(f"{path.name}: ElementSpacing {spacing} must be positive")
    offset_text = get(*_ALIASES["offset"])
    offset = (0.0,) * ndims if offset_text is None else _floats(path, "Offset", offset_text, ndims)
    transform_text = get(*_ALIASES["transform"])
    identity = tuple(float(v) for v in np.eye(ndims).ravel())
    transform = identity if transform_text is None else _floats(path, "TransformMatrix", transform_text,
                                                                 ndims * ndims)
    if not all(math.isfinite(v) for v in offset + transform):
        raise MetaImageError(f"{path.name}: Offset or TransformMatrix holds a value that is not finite")
    if abs(np.linalg.det(np.asarray(transform).reshape(ndims, ndims))) < 1e-6:
        raise MetaImageError(f"{path.name}: TransformMatrix {transform} is singular")
    big_endian = _boolean(path, "BinaryDataByteOrderMSB", get(*_ALIASES["msb"]) or "False")
    compressed = _boolean(path, "CompressedData", get("CompressedData") or "False")
    size_text = get("CompressedDataSize")
    compressed_size = None if size_text is None else _integers(path, "CompressedDataSize", size_text, 1)[0]
    header_size_text = get("HeaderSize")
    header_size = 0 if header_size_text is None else _integers(path, "HeaderSize", header_size_text, 1)[0]
    if header_size < -1:
        raise MetaImageError(f"{path.name}: HeaderSize {header_size} must be -1 or more")
    data_name = need("ElementDataFile").strip()
    if data_name.upper() == "LOCAL":
        data_file = path
        data_offset = data_start + max(header_size, 0) if header_size != -1 else -1
    elif data_name.upper().startswith("LIST") or re.search(r"%\d*d\S*\s+-?\d+\s+-?\d+\s+-?\d+$", data_name):
        raise MetaImageError(f"{path.name}: data in several files (ElementDataFile = {data_name}) are not "
                             "supported; only one data file or LOCAL")
    else:
        data_file = path.parent / data_name
        data_offset = header_size
    if compressed and data_offset == -1:
        raise MetaImageError(f"{path.name}: HeaderSize -1 needs uncompressed data")
    return MetaImageHeader(
        path=path, fields=MappingProxyType(dict(fields)), dim_size=dim_size, element_type=element_type,
        channels=channels, element_spacing=spacing, offset=offset, transform_matrix=transform,
        big_endian=big_endian, compressed=compressed, compressed_size=compressed_size, data_file=data_file,
        data_offset=data_offset,
    )


def _header_lines(path: Path) -> tuple[dict[str, str], int]:
    """The ``Key = Value`` lines up to and including ``ElementDataFile``, and the byte offset after that line."""
    fields: dict[str, str] = {}
    try:
        with path.open("rb") as f:
            while True:
                line = f.readline(_MAX_HEADER_BYTES)
                if not line:
                    raise MetaImageError(f"{path.name}: the header ends without ElementDataFile")
                if f.tell() > _MAX_HEADER_BYTES:
                    raise MetaImageError(f"{path.name}: no MetaImage header in the first {_MAX_HEADER_BYTES} bytes")
                try:
                    text = line.decode("ascii").strip()
                except UnicodeDecodeError:
                    raise MetaImageError(f"{path.name}: the header holds bytes that are not text; not a MetaImage "
                                         "header") from None
                if not text:
                    continue
                key, sep, value = text.partition("=")
                if not sep or not key.strip() or " " in key.strip():
                    raise MetaImageError(f"{path.name}: header line {text[:60]!r} is not 'Key = Value'")
                fields[key.strip()] = value.strip()
                if key.strip().lower() == "elementdatafile":
                    return fields, f.tell()
    except OSError as exc:
        raise MetaImageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _numbers(path: Path, name: str, text: str, count: int, convert: Callable[[str], _Number],
             what: str) -> tuple[_Number, ...]:
    """The `count` values of header field `name`, each read by `convert`; `what` names them in the error."""
    try:
        values = tuple(convert(v) for v in text.split())
    except ValueError:
        raise MetaImageError(f"{path.name}: {name} {text!r} is not {count} {what}") from None
    if len(values) != count:
        raise MetaImageError(f"{path.name}: {name} has {len(values)} value(s); {count} expected")
    return values


def _integers(path: Path, name: str, text: str, count: int) -> tuple[int, ...]:
    return _numbers(path, name, text, count, int, "integer(s)")


def _floats(path: Path, name: str, text: str, count: int) -> tuple[float, ...]:
    return _numbers(path, name, text, count, float, "number(s)")


def _boolean(path: Path, name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise MetaImageError(f"{path.name}: {name} {text!r} is neither True nor False")


def _read_data(header: MetaImageHeader) -> np.ndarray:
    """The data bytes as a flat uint8 array of exactly `header.data_bytes`."""
    name = header.data_file.name
    expected = header.data_bytes
    try:
        size = header.data_file.stat().st_size
        with header.data_file.open("rb") as f:
            if not header.compressed:
                start = size - expected if header.data_offset == -1 else header.data_offset
                if start < 0 or size - start != expected:
                    raise MetaImageError(f"{name}: {max(size - max(start, 0), 0)} bytes of data, {expected} expected "
                                         f"for DimSize {header.dim_size} of {header.element_type}; the file is "
                                         "truncated or the header is wrong")
                f.seek(start)
                out = np.empty(expected, np.uint8)
                if f.readinto(memoryview(out)) != expected:
                    raise MetaImageError(f"{name}: the data ended early")
                return out
            f.seek(header.data_offset)
            return _inflate(f, header, size - header.data_offset)
    except OSError as exc:
        raise MetaImageError(f"cannot read the data file {header.data_file}: {exc.strerror or exc}") from None


def _inflate(f: BinaryIO, header: MetaImageHeader, available: int) -> np.ndarray:
    """Inflate the zlib (or gzip) stream at `f`'s position into an array of exactly `header.data_bytes`."""
    name = header.data_file.name
    expected = header.data_bytes
    if header.compressed_size is not None and header.compressed_size > available:
        raise MetaImageError(f"{name}: CompressedDataSize is {header.compressed_size} but the file holds "
                             f"{available} bytes after the header; the file is truncated")
    budget = header.compressed_size if header.compressed_size is not None else available
    out = np.empty(expected, np.uint8)
    view = memoryview(out)
    done = 0
    inflater = zlib.decompressobj(wbits=47)  # 32 + 15: zlib or gzip header, detected
    try:
        while budget > 0 and not inflater.eof:
            data = f.read(min(_CHUNK, budget))
            if not data:
                break
            budget -= len(data)
            while data and not inflater.eof:
                piece = inflater.decompress(data, expected - done + 1)
                if done + len(piece) > expected:
                    raise MetaImageError(f"{name}: the compressed data hold more than the {expected} bytes of "
                                         f"DimSize {header.dim_size} of {header.element_type}; the header is wrong")
                view[done:done + len(piece)] = piece
                done += len(piece)
                data = inflater.unconsumed_tail
    except zlib.error as exc:
        raise MetaImageError(f"{name}: the compressed data are corrupt ({exc})") from None
    if not inflater.eof or done != expected:
        raise MetaImageError(f"{name}: the compressed data end after {done} of {expected} bytes; the file is "
                             "truncated or the header is wrong")
    return out
