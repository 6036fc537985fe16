"""The fuzz corpus: valid CT instances in every transfer syntax the node accepts, mutated with seeded byte edits.

`SYNTAXES` lists every transfer syntax of the node's presentation contexts (`ACCEPTED_TRANSFER_SYNTAXES`:
pynetdicom's ``ALL_TRANSFER_SYNTAXES`` but JPIP, ``docs/conformance.md`` 3.2) with how a valid template is written:

* uncompressed and deflated: pydicom; Explicit VR Big Endian with dcmtk ``dcmconv +tb``;
* JPEG baseline / extended / lossless / lossless SV1: dcmtk ``dcmcjpeg`` (baseline from 8-bit samples);
* JPEG-LS lossless and near-lossless, JPEG 2000 lossless and lossy, RLE: pydicom's encoders (pyjpegls,
  pylibjpeg-openjpeg);
* syntaxes without an encoder here, carried by a payload they allow: High-Throughput JPEG 2000 and JPEG 2000
  Part 2 carry a Part 1 code stream (their decoders read Part 1); Deflated Image Frame Compression carries
  zlib-deflated frames; JPEG XL and the video syntaxes carry bytes that start like their streams. (The JPIP
  templates - a Pixel Data Provider URL, no Pixel Data - are kept in `_TEMPLATES` should the node accept them
  again; it declines them today.)

Each template series is a few 64 x 64 slices (so that the node's routing sends it to a worker, which decodes
every slice) with one of the fake patients of `chaos.phi`. A case mutates the data set bytes (never the File Meta
Information: the request's SOP Class/Instance UID and transfer syntax come from it) with one seeded operation:
bit flips, random bytes, bytes inside the pixel data, truncation, insertion, deletion, a corrupted element
length, an extreme value of an image attribute, a corrupted encapsulated item, or a spliced chunk. For the
deflated syntaxes half of the cases mutate the inflated data set and deflate it again.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
from ct_series_factory import hu_pattern, write_ct_series
from pydicom import Dataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pynetdicom.dsutils import encode_file_meta

from chaos.phi import FakePatient, stamp
from sarcoscreen.node.scp import ACCEPTED_TRANSFER_SYNTAXES

__all__ = ["OPERATIONS", "SYNTAXES", "FuzzCase", "Syntax", "mutate", "write_template"]

ROWS = COLUMNS = 64


@dataclass(frozen=True)
class Syntax:
    """A transfer syntax the node accepts and how its template is made."""

    uid: str
    name: str
    recipe: str
    """``explicit``, ``implicit``, ``deflate``, ``dcmtk:<args>``, ``pydicom:<codec uid>``, ``j2k-part1``,
    ``deflate-frames``, ``payload:<hex prefix>`` or ``referenced``."""
    decodable: bool
    eight_bit: bool = False

    @property
    def deflated(self) -> bool:
        return self.uid in ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.205")


_JLS_NEAR, _J2K_LOSSY = "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91"
_VIDEO = "payload:000001b3"
_TEMPLATES: tuple[Syntax, ...] = (
    Syntax("1.2.840.10008.1.2", "Implicit VR Little Endian", "implicit", True),
    Syntax("1.2.840.10008.1.2.1", "Explicit VR Little Endian", "explicit", True),
    Syntax("1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian", "deflate", True),
    Syntax("1.2.840.10008.1.2.2", "Explicit VR Big Endian", "dcmtk:dcmconv +tb", True),
    Syntax("1.2.840.10008.1.2.4.50", "JPEG Baseline", "dcmtk:dcmcjpeg +eb +q 95", True, eight_bit=True),
    Syntax("1.2.840.10008.1.2.4.51", "JPEG Extended", "dcmtk:dcmcjpeg +ee +q 95", True),
    Syntax("1.2.840.10008.1.2.4.57", "JPEG Lossless", "dcmtk:dcmcjpeg +el +sv 6", True),
    Syntax("1.2.840.10008.1.2.4.70", "JPEG Lossless SV1", "dcmtk:dcmcjpeg +e1", True),
    Syntax("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless", "pydicom:1.2.840.10008.1.2.4.80", True),
    Syntax(_JLS_NEAR, "JPEG-LS Near-Lossless", f"pydicom:{_JLS_NEAR}", True),
    Syntax("1.2.840.10008.1.2.4.90", "JPEG 2000 Lossless", "pydicom:1.2.840.10008.1.2.4.90", True),
    Syntax(_J2K_LOSSY, "JPEG 2000", f"pydicom:{_J2K_LOSSY}", True),
    Syntax("1.2.840.10008.1.2.4.92", "JPEG 2000 Part 2 Lossless", "j2k-part1", False),
    Syntax("1.2.840.10008.1.2.4.93", "JPEG 2000 Part 2", "j2k-part1", False),
    Syntax("1.2.840.10008.1.2.4.94", "JPIP Referenced", "referenced", False),
    Syntax("1.2.840.10008.1.2.4.95", "JPIP Referenced Deflate", "referenced", False),
    *(Syntax(f"1.2.840.10008.1.2.4.{n}", f"video {n}", _VIDEO, False)
      for n in ("100", "100.1", "101", "101.1", "102", "102.1", "103", "103.1", "104", "104.1", "105", "105.1",
                "106", "106.1", "107", "108")),
    *(Syntax(f"1.2.840.10008.1.2.4.{n}", f"JPEG XL {n}", "payload:ff0a", False) for n in ("110", "111", "112")),
    Syntax("1.2.840.10008.1.2.4.201", "HTJ2K Lossless", "j2k-part1", True),
    Syntax("1.2.840.10008.1.2.4.202", "HTJ2K Lossless RPCL", "j2k-part1", True),
    Syntax("1.2.840.10008.1.2.4.203", "HTJ2K", "j2k-part1", True),
    Syntax("1.2.840.10008.1.2.4.204", "JPIP HTJ2K Referenced", "referenced", False),
    Syntax("1.2.840.10008.1.2.4.205", "JPIP HTJ2K Referenced Deflate", "referenced", False),
    Syntax("1.2.840.10008.1.2.5", "RLE Lossless", "pydicom:1.2.840.10008.1.2.5", True),
    *(Syntax(f"1.2.840.10008.1.2.7.{n}", f"SMPTE ST 2110 {n}", "payload:00", False) for n in ("1", "2", "3")),
    Syntax("1.2.840.10008.1.2.8.1", "Deflated Image Frame Compression", "deflate-frames", False),
)
SYNTAXES: tuple[Syntax, ...] = tuple(s for s in _TEMPLATES if s.uid in ACCEPTED_TRANSFER_SYNTAXES)
"""The templates of the syntaxes the node accepts (the JPIP ones, which it declines, are left out)."""
if set(ACCEPTED_TRANSFER_SYNTAXES) - {s.uid for s in SYNTAXES}:
    raise RuntimeError(f"no fuzz template for the accepted transfer syntaxes "
                       f"{sorted(set(ACCEPTED_TRANSFER_SYNTAXES) - {s.uid for s in SYNTAXES})}")


def _encode(ds: Dataset, syntax: Syntax) -> bytes:
    """The whole PS3.10 file: preamble, File Meta Information (transfer syntax `syntax`) and the data set."""
    ds.file_meta.TransferSyntaxUID = syntax.uid
    stream = DicomBytesIO()
    stream.is_little_endian, stream.is_implicit_VR = True, syntax.recipe == "implicit"
    write_dataset(stream, ds)
    body = stream.getvalue()
    if syntax.deflated:
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body = compressor.compress(body) + compressor.flush()
    return b"".join((b"\x00" * 128, b"DICM", encode_file_meta(ds.file_meta), body))


def _pixel_payload(ds: Dataset, syntax: Syntax, rng: random.Random) -> None:
    """Pixel Data as `syntax` carries it (for the recipes without an encoder of their own)."""
    if syntax.recipe == "referenced":
        del ds.PixelData
        ds.PixelDataProviderURL = "http://127.0.0.1:9/jpip/chaos"
    elif syntax.recipe == "j2k-part1":
        ds.compress("1.2.840.10008.1.2.4.90", generate_instance_uid=False)
    elif syntax.recipe == "deflate-frames":
        frame = ds.PixelData
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        ds.PixelData = encapsulate([compressor.compress(frame) + compressor.flush()])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    elif syntax.recipe.startswith("payload:"):
        prefix = bytes.fromhex(syntax.recipe.split(":", 1)[1])
        payload = prefix + rng.randbytes(2048 - len(prefix))
        ds.PixelData = encapsulate([payload])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    elif syntax.recipe.startswith("pydicom:"):
        options: dict[str, object] = {}
        codec = syntax.recipe.split(":", 1)[1]
        if codec == _JLS_NEAR:
            options["jls_error"] = 2
        elif codec == _J2K_LOSSY:
            options["j2k_cr"] = [10]
        ds.compress(codec, generate_instance_uid=False, **options)


def write_template(folder: Path, syntax: Syntax, slices: int, patient: FakePatient, seed: int) -> list[Path]:
    """A valid series of `slices` instances in `syntax` (new UIDs), one file each, in `folder`."""
    rng = random.Random(seed)
    raw = folder / "raw"
    if syntax.eight_bit:  # JPEG baseline holds 8-bit samples: stored 0..255, slope 8
        hu = [np.clip(np.round(h / 8) * 8, -1024, 1016).astype(np.int32)
              for h in hu_pattern(slices, ROWS, COLUMNS, seed)]
        series = write_ct_series(raw, slices, ROWS, COLUMNS, hu=hu, slopes=8, intercepts=-1024, bits_allocated=8,
                                 bits_stored=8, shuffle=False, seed=seed, transform=lambda ds, _n: stamp(ds, patient))
    else:
        series = write_ct_series(raw, slices, ROWS, COLUMNS, shuffle=False, seed=seed,
                                 transform=lambda ds, _n: stamp(ds, patient))
    paths = []
    for number, source in enumerate(series.files):
        target = folder / f"template-{number}.dcm"
        if syntax.recipe.startswith("dcmtk:"):
            command = syntax.recipe.split(":", 1)[1].split()
            if shutil.which(command[0]) is None:
                raise FileNotFoundError(f"dcmtk's {command[0]} is needed for {syntax.name}")
            subprocess.run([*command, str(source), str(target)], check=True, capture_output=True)
        else:
            ds = pydicom.dcmread(source)
            _pixel_payload(ds, syntax, rng)
            target.write_bytes(_encode(ds, syntax))
        paths.append(target)
    shutil.rmtree(raw)
    return paths


# --- mutations --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Structure:
    """Where the data set's top-level elements are (offsets into the data set bytes)."""

    values: dict[int, tuple[int, int, str]]
    """tag -> (value offset, value length, VR)."""
    implicit: bool
    little_endian: bool

    @property
    def pixel_offset(self) -> int | None:
        found = self.values.get(0x7FE00010)
        return found[0] if found else None

    def length_field(self, tag: int) -> tuple[int, int]:
        """(offset, size) of the element's length field."""
        offset, _, vr = self.values[tag]
        if self.implicit or vr in {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}:
            return offset - 4, 4
        return offset - 2, 2


def structure_of(body: bytes, implicit: bool, little_endian: bool) -> Structure:
    """Top-level element offsets of a data set (pydicom, values left raw)."""
    ds = read_dataset(BytesIO(body), implicit, little_endian)
    values = {}
    for tag in list(ds._dict):
        element = ds._dict[tag]
        if getattr(element, "value_tell", None) is not None and element.length != 0xFFFFFFFF:
            values[int(tag)] = (int(element.value_tell), int(element.length), str(element.VR or "UN"))
        elif int(tag) == 0x7FE00010 and getattr(element, "value_tell", None) is not None:
            values[int(tag)] = (int(element.value_tell), len(body) - int(element.value_tell), "OB")
    return Structure(values, implicit, little_endian)


_EXTREME_US = (0, 1, 3, 0x7FFF, 0x8000, 0xFFFF)
_EXTREME_TEXT = ("NaN", "inf", "-0", "1e308", "-1", "\\\\", "", "9" * 12, "0.0")
_IMAGE_US = (0x00280010, 0x00280011, 0x00280100, 0x00280101, 0x00280102, 0x00280103, 0x00280002)
_IMAGE_TEXT = (0x00280008, 0x00280030, 0x00200032, 0x00200037, 0x00180050, 0x00281053, 0x00281052, 0x00200013)


def _op_bitflip(body: bytearray, rng: random.Random, _s: Structure | None) -> str:
    positions = [rng.randrange(len(body)) for _ in range(rng.randint(1, 8))]
    for p in positions:
        body[p] ^= 1 << rng.randrange(8)
    return f"{len(positions)} bits flipped"


def _op_bytes(body: bytearray, rng: random.Random, _s: Structure | None) -> str:
    count = rng.randint(1, 16)
    for _ in range(count):
        body[rng.randrange(len(body))] = rng.randrange(256)
    return f"{count} random bytes"


def _op_pixel(body: bytearray, rng: random.Random, s: Structure | None) -> str:
    start = s.pixel_offset if s is not None and s.pixel_offset is not None else len(body) // 2
    if start >= len(body):
        return _op_bytes(body, rng, s)
    count = rng.randint(1, 32)
    for _ in range(count):
        body[rng.randrange(start, len(body))] = rng.randrange(256)
    return f"{count} bytes in the pixel data"


def _op_truncate(body: bytearray, rng: random.Random, s: Structure | None) -> str:
    start = s.pixel_offset if s is not None and s.pixel_offset is not None and rng.random() < 0.5 else 1
    cut = rng.randrange(min(start, len(body) - 1), len(body))
    del body[cut:]
    return f"truncated at {cut}"


def _op_insert(body: bytearray, rng: random.Random, _s: Structure | None) -> str:
    at, count = rng.randrange(len(body)), rng.randint(1, 64)
    body[at:at] = rng.randbytes(count)
    return f"{count} bytes inserted at {at}"


def _op_delete(body: bytearray, rng: random.Random, _s: Structure | None) -> str:
    at, count = rng.randrange(len(body)), rng.randint(1, 64)
    del body[at:at + count]
    return f"{count} bytes deleted at {at}"


def _op_length(body: bytearray, rng: random.Random, s: Structure | None) -> str:
    if s is None or not s.values:
        return _op_bytes(body, rng, s)
    tag = rng.choice(sorted(s.values))
    offset, size = s.length_field(tag)
    _, length, _ = s.values[tag]
    limit = 0xFFFF if size == 2 else 0xFFFFFFFF
    value = rng.choice((0, 1, length + 1, length * 2 + 2, limit, limit - 1, rng.randrange(limit)))
    body[offset:offset + size] = struct.pack(("<" if s.little_endian else ">") + ("H" if size == 2 else "I"),
                                             min(value, limit))
    return f"length of ({tag >> 16:04X},{tag & 0xFFFF:04X}) set to {value}"


def _op_value(body: bytearray, rng: random.Random, s: Structure | None) -> str:
    if s is None:
        return _op_bytes(body, rng, s)
    numeric = [t for t in _IMAGE_US if t in s.values and s.values[t][1] == 2]
    text = [t for t in _IMAGE_TEXT if t in s.values and s.values[t][1] > 0]
    if numeric and (not text or rng.random() < 0.6):
        tag = rng.choice(numeric)
        value = rng.choice(_EXTREME_US)
        offset = s.values[tag][0]
        body[offset:offset + 2] = struct.pack("<H" if s.little_endian else ">H", value)
        return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) set to {value}"
    if not text:
        return _op_bytes(body, rng, s)
    tag = rng.choice(text)
    offset, length, _ = s.values[tag]
    word = rng.choice(_EXTREME_TEXT).encode()
    body[offset:offset + length] = (word + b" " * length)[:length]
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) set to {word[:length]!r}"


def _op_fragment(body: bytearray, rng: random.Random, s: Structure | None) -> str:
    start = s.pixel_offset if s is not None and s.pixel_offset is not None else 0
    item = b"\xfe\xff\x00\xe0" if s is None or s.little_endian else b"\xff\xfe\xe0\x00"
    positions = []
    at = body.find(item, start)
    while at != -1 and len(positions) < 64:
        positions.append(at)
        at = body.find(item, at + 4)
    if not positions:
        return _op_pixel(body, rng, s)
    at = rng.choice(positions)
    value = rng.choice((0, 1, 3, 0xFFFFFFFF, 0x7FFFFFFF, rng.randrange(1 << 32)))
    body[at + 4:at + 8] = struct.pack("<I", value)
    return f"encapsulated item at {at} given length {value}"


def _op_splice(body: bytearray, rng: random.Random, _s: Structure | None) -> str:
    count = rng.randint(4, 256)
    source, target = rng.randrange(len(body)), rng.randrange(len(body))
    chunk = bytes(body[source:source + count])
    body[target:target + len(chunk)] = chunk
    return f"{len(chunk)} bytes copied from {source} to {target}"


Operation = Callable[[bytearray, random.Random, Structure | None], str]
OPERATIONS: dict[str, Operation] = {
    "bitflip": _op_bitflip, "bytes": _op_bytes, "pixel": _op_pixel, "truncate": _op_truncate,
    "insert": _op_insert, "delete": _op_delete, "length": _op_length, "value": _op_value,
    "fragment": _op_fragment, "splice": _op_splice,
}
_RAW_DEFLATE_OPS = ("bitflip", "bytes", "truncate")


@dataclass(frozen=True)
class FuzzCase:
    index: int
    syntax: Syntax
    operation: str
    detail: str
    path: Path
    sop_instance_uid: str


def _split(data: bytes) -> tuple[bytes, bytes]:
    """(preamble + File Meta Information, data set bytes) of a PS3.10 file."""
    fp = BytesIO(data)
    fp.seek(132)
    read_dataset(fp, False, True, stop_when=lambda tag, _vr, _length: tag.group != 2)
    return data[:fp.tell()], data[fp.tell():]


def mutate(template: Path, target: Path, syntax: Syntax, index: int, seed: int) -> FuzzCase:
    """Case `index`: `template` with one seeded mutation of its data set, written to `target`."""
    rng = random.Random(f"{seed}:{index}")
    data = template.read_bytes()
    head, body = _split(data)
    inflated = syntax.deflated and rng.random() < 0.5
    if syntax.deflated and not inflated:
        operation = rng.choice(_RAW_DEFLATE_OPS)
        structure = None
        mutable = bytearray(body)
    else:
        if syntax.deflated:
            body = zlib.decompress(body, -zlib.MAX_WBITS)
        operation = rng.choice(sorted(OPERATIONS))
        implicit = syntax.recipe == "implicit"
        little = syntax.uid != "1.2.840.10008.1.2.2"
        structure = structure_of(body, implicit, little)
        mutable = bytearray(body)
    detail = OPERATIONS[operation](mutable, rng, structure)
    if inflated:
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        mutable = bytearray(compressor.compress(bytes(mutable)) + compressor.flush())
        detail += " (inflated data set, deflated again)"
    target.write_bytes(head + bytes(mutable))
    meta = pydicom.filereader.read_file_meta_info(target)
    return FuzzCase(index, syntax, operation, detail, target, str(meta.MediaStorageSOPInstanceUID))


