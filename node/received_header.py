"""What the node records of a received instance, read from the header of its PS3.10 bytes (pixel data not read).

`read_header_attributes` is the one entry point; it gives `HeaderAttributes` from either of two readers:

* `scan_header`, for the common case: a single pass with `struct` over the top-level elements of a data set in
  Implicit or Explicit VR Little Endian (every transfer syntax but Explicit VR Big Endian and Deflated), whose
  text is in the default repertoire, Latin-1 or UTF-8, without the functional groups of a multi-frame object. It
  decodes only the attributes the index needs. It declines (``None``) anything else, including whatever looks
  malformed (elements out of order, an implausible VR, a length beyond the end).
* `dataset_attributes`, from a pydicom `Dataset`: for everything `scan_header` declines (pydicom then parses the
  whole header and says what is wrong with it), and for the start-up reconciliation, which reads spool files.

Either way the data set must be encoded in the VR encoding (Implicit or Explicit) of the transfer syntax its File
Meta Information names - for a received instance, the presentation context's (PS3.5 10.1): pydicom reads one
that is not with a warning only, and the file would then say one thing and hold another, so
`read_header_attributes` raises `TransferSyntaxMismatchError` (`check_vr_encoding`: pydicom's own test on the first
element - a VR of two upper-case letters after its tag means Explicit VR).

The scanner exists for speed: the C-STORE handler runs it for every instance before answering, and it is several
times faster than `pydicom.dcmread` followed by attribute access (`benchmarks/ingest_steps.py`). Its results are
checked against `dataset_attributes` on every DICOM file of the test data (tests/node/test_received_header.py).

Byte layout (PS3.5 7.1): a data element is tag (group, element: two little-endian uint16), then in Explicit VR
the VR (2 characters) and a 16-bit length - or, for the VRs of PS3.5 Table 7.1-1, 2 reserved bytes and a 32-bit
length - and in Implicit VR a 32-bit length. A sequence of undefined length ends with a Sequence Delimitation
Item (FFFE,E0DD); its items (FFFE,E000) have a 32-bit length, or an undefined one ended by (FFFE,E00D) (PS3.5
7.5). The File Meta Information (group 0002) is always Explicit VR Little Endian (PS3.10 7.1).
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from dataclasses import dataclass
from io import BytesIO

from pydicom import Dataset, dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.multival import MultiValue
from pydicom.uid import UID, AllTransferSyntaxes

__all__ = ["HeaderAttributes", "TransferSyntaxMismatchError", "check_vr_encoding", "dataset_attributes",
           "read_header_attributes", "scan_header"]

_LONG_LENGTH_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
                              b"UV"})
"""Explicit VRs with 2 reserved bytes and a 32-bit length (PS3.5 Table 7.1-1)."""
_SHORT_LENGTH_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
                               b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"})
"""The other VRs (PS3.5 Table 6.2-1), with a 16-bit length; anything else is not a plausible element."""

_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_SPECIFIC_CHARACTER_SET = 0x00080005
_SHARED_FUNCTIONAL_GROUPS = 0x52009229
_PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
"""Float, Double Float and Pixel Data: the header ends at the first of them."""
_IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"

_TEXT_ENCODINGS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}
"""Specific Character Sets the scanner decodes (pydicom reads text without one as Latin-1 too)."""

_PADDING = "\x00" + "".join(chr(c) for c in range(0x3000 + 1) if chr(c).isspace())
"""Stripped from both ends of every value: the padding of PS3.5 6.2 (space; NUL for UI) and any other white
space, as `str.strip` (which pydicom uses for some VRs) strips it."""

_TAG = struct.Struct("<HH")
_TAG_LENGTH = struct.Struct("<HHI")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class TransferSyntaxMismatchError(ValueError):
    """The data set is encoded in the other VR encoding than its transfer syntax says (PS3.5 10.1)."""


@dataclass(frozen=True)
class HeaderAttributes:
    """The attributes the index records, as text with padding stripped; multi-valued ones as tuples. Empty when
    absent. ``image_orientation`` comes from the Plane Orientation functional group for a multi-frame object."""

    transfer_syntax_uid: str = ""
    specific_character_set: str = ""
    image_type: tuple[str, ...] = ()
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_date: str = ""
    accession_number: str = ""
    modality: str = ""
    study_description: str = ""
    series_description: str = ""
    patient_id: str = ""
    patient_sex: str = ""
    patient_age: str = ""
    patient_size: str = ""
    body_part: str = ""
    slice_thickness: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    image_orientation: tuple[str, ...] = ()
    frame_of_reference_uid: str = ""
    number_of_frames: str = ""


_KEYWORDS = {
    "specific_character_set": "SpecificCharacterSet",
    "image_type": "ImageType",
    "sop_class_uid": "SOPClassUID",
    "sop_instance_uid": "SOPInstanceUID",
    "study_date": "StudyDate",
    "accession_number": "AccessionNumber",
    "modality": "Modality",
    "study_description": "StudyDescription",
    "series_description": "SeriesDescription",
    "patient_id": "PatientID",
    "patient_sex": "PatientSex",
    "patient_age": "PatientAge",
    "patient_size": "PatientSize",
    "body_part": "BodyPartExamined",
    "slice_thickness": "SliceThickness",
    "study_instance_uid": "StudyInstanceUID",
    "series_instance_uid": "SeriesInstanceUID",
    "image_orientation": "ImageOrientationPatient",
    "frame_of_reference_uid": "FrameOfReferenceUID",
    "number_of_frames": "NumberOfFrames",
}
"""Field of `HeaderAttributes` -> DICOM keyword (all but the transfer syntax, which is in the File Meta)."""

_MULTI_VALUED = frozenset({"image_type", "image_orientation"})
"""The fields of `HeaderAttributes` that are tuples (values split at the backslash)."""

_TAGS = {tag_for_keyword(keyword): (name, dictionary_VR(keyword).encode()) for name, keyword in _KEYWORDS.items()}
"""Tag -> (field, VR of the data dictionary), for the scanner."""



def read_header_attributes(encoded: bytes) -> HeaderAttributes:
    """The attributes of `encoded` (a complete PS3.10 file): `scan_header`, else pydicom. Raises whatever pydicom
    raises for a header it cannot parse, and `TransferSyntaxMismatchError` for a data set not encoded in the VR
    encoding of its transfer syntax."""
    check_vr_encoding(encoded)
    scanned = scan_header(encoded)
    if scanned is not None:
        return scanned
    return dataset_attributes(dcmread(BytesIO(encoded), stop_before_pixels=True))


def check_vr_encoding(encoded: bytes) -> None:
    """Raise `TransferSyntaxMismatchError` when the first element of the data set in `encoded` (a PS3.10 file) is
    not encoded in the VR encoding of the transfer syntax its File Meta Information names (inflated first for the
    deflated syntaxes). Files without File Meta, and private transfer syntaxes, are left to pydicom."""
    located = _data_set_start(encoded)
    if located is None:
        return
    position, syntax = located
    encoding = _VR_ENCODINGS.get(syntax)
    if encoding is None:
        return
    implicit, deflated = encoding
    first = encoded[position:position + 6]
    if deflated:
        try:
            first = zlib.decompressobj(-zlib.MAX_WBITS).decompress(encoded[position:position + 4096], 6)
        except zlib.error:
            return  # pydicom says what is wrong with it
    if len(first) < 6 or _looks_explicit(first, 0) != implicit:
        return
    found, expected = ("Explicit", "Implicit") if implicit else ("Implicit", "Explicit")
    raise TransferSyntaxMismatchError(f"the data set is encoded in {found} VR, but its transfer syntax {syntax} "
                                      f"({UID(syntax).name}) is {expected} VR (PS3.5 10.1)")


_VR_ENCODINGS = {str(uid): (uid.is_implicit_VR, uid.is_deflated) for uid in AllTransferSyntaxes}
"""Standard transfer syntax -> (Implicit VR, deflated), looked up once rather than per instance."""


def dataset_attributes(ds: Dataset) -> HeaderAttributes:
    """The attributes of a pydicom data set (as read from a PS3.10 file, with its File Meta)."""
    meta = getattr(ds, "file_meta", None)
    values: dict[str, object] = {"transfer_syntax_uid": _text(meta.get("TransferSyntaxUID", "")) if meta else ""}
    for name, keyword in _KEYWORDS.items():
        value = ds.get(keyword)
        if name in _MULTI_VALUED:
            values[name] = _multiple(value)
        else:
            values[name] = _text(value)
    if not values["image_orientation"]:
        shared = ds.get("SharedFunctionalGroupsSequence")
        with contextlib.suppress(TypeError, IndexError, AttributeError):
            values["image_orientation"] = _multiple(
                shared[0].PlaneOrientationSequence[0].ImageOrientationPatient)  # type: ignore[index]
    return HeaderAttributes(**values)  # type: ignore[arg-type]


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(v).strip(_PADDING) for v in value)
    return str(value).strip(_PADDING)


def _multiple(value: object) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, MultiValue | list | tuple):
        return tuple(str(v).strip(_PADDING) for v in value)
    return (str(value).strip(_PADDING),)


def scan_header(encoded: bytes) -> HeaderAttributes | None:
    """The attributes of `encoded` by the single-pass scanner; ``None`` when it declines (see the module)."""
    located = _data_set_start(encoded)
    if located is None:
        return None
    position, syntax = located
    implicit = syntax == _IMPLICIT_VR_LITTLE_ENDIAN
    if not implicit and syntax not in _EXPLICIT_LITTLE_ENDIAN_SYNTAXES:
        return None
    raw = _Scanner(encoded, implicit=implicit).top_level(position)
    return None if raw is None else _decode(raw, syntax)


def _data_set_start(encoded: bytes) -> tuple[int, str] | None:
    """(where the data set starts, the Transfer Syntax UID) of a PS3.10 file, from its File Meta Information
    (always Explicit VR Little Endian, PS3.10 7.1); ``None`` without one or when it is not plausible."""
    if len(encoded) < 132 or encoded[128:132] != b"DICM":
        return None
    meta = _Scanner(encoded, implicit=False)
    position, syntax = 132, ""
    while position + 8 <= meta.size:
        group, element = _TAG.unpack_from(meta.buffer, position)
        if group != 0x0002:
            break
        header = meta.element(position)
        if header is None:
            return None
        start, length = header
        if length == _UNDEFINED or start + length > meta.size:
            return None
        if element == 0x0010:
            syntax = encoded[start:start + length].decode("ascii", "replace").strip(_PADDING)
        position = start + length
    return position, syntax


def _looks_explicit(encoded: bytes, position: int) -> bool:
    """Whether the element at `position` carries an Explicit VR: two upper-case letters after the tag (pydicom's
    test; in Implicit VR these are the low bytes of the length, which would have to exceed 16 kB)."""
    vr = encoded[position + 4:position + 6]
    return len(vr) == 2 and all(0x41 <= c <= 0x5A for c in vr)


_EXPLICIT_LITTLE_ENDIAN_SYNTAXES = frozenset(
    uid for uid in AllTransferSyntaxes if uid.is_little_endian and not uid.is_implicit_VR and not uid.is_deflated)
"""The standard transfer syntaxes whose data set is Explicit VR Little Endian (the pixel data may be compressed);
private ones are left to pydicom."""


class _Scanner:
    """Walks the data elements of one PS3.10 file in one transfer syntax (Little Endian)."""

    _MAX_DEPTH = 16

    def __init__(self, encoded: bytes, *, implicit: bool) -> None:
        self.encoded = encoded
        self.buffer = memoryview(encoded)
        self.size = len(encoded)
        self.implicit = implicit

    def top_level(self, position: int) -> dict[str, bytes] | None:
        """The raw values of the wanted attributes among the top-level elements from `position` on."""
        raw: dict[str, bytes] = {}
        previous = -1
        while position < self.size:
            if position + 8 > self.size:
                return None  # a piece of an element at the end
            group, element = _TAG.unpack_from(self.buffer, position)
            tag = group << 16 | element
            if tag <= previous:
                return None  # out of order (a damaged tag, say): let pydicom judge
            if tag in _PIXEL_DATA_TAGS:  # the end of the header, as for pydicom's stop_before_pixels, which reads
                return raw if self.element(position) is not None else None  # the element's header first
            if tag == _SHARED_FUNCTIONAL_GROUPS:
                return None  # a multi-frame object's orientation lies in its functional groups: pydicom reads them
            previous = tag
            header = self.element(position)
            if header is None:
                return None
            start, length = header
            if length == _UNDEFINED:
                end = self.sequence_end(position, start, depth=0)
                if end is None:
                    return None
                position = end
                continue
            if start + length > self.size:
                return None
            wanted = _TAGS.get(tag)
            if wanted is not None:
                name, vr = wanted
                if not self.implicit and self.encoded[position + 4:position + 6] != vr:
                    return None  # not the VR of the data dictionary: pydicom knows what to make of it
                raw[name] = self.encoded[start:start + length]
            position = start + length
        return raw

    def element(self, position: int) -> tuple[int, int] | None:
        """(value start, value length) of the element at `position`; ``None`` for what is not a plausible one."""
        if self.implicit:
            return position + 8, _U32.unpack_from(self.buffer, position + 4)[0]
        vr = self.encoded[position + 4:position + 6]
        if vr in _LONG_LENGTH_VRS:
            if position + 12 > self.size:
                return None
            return position + 12, _U32.unpack_from(self.buffer, position + 8)[0]
        if vr not in _SHORT_LENGTH_VRS:
            return None
        return position + 8, _U16.unpack_from(self.buffer, position + 6)[0]

    def sequence_end(self, position: int, first_item: int, depth: int) -> int | None:
        """The position after the element of undefined length at `position` (a sequence), whose first item
        starts at `first_item`."""
        if depth > self._MAX_DEPTH:
            return None
        if not self.implicit and self.encoded[position + 4:position + 6] != b"SQ":
            return None  # e.g. UN of undefined length: its content is Implicit VR (PS3.5 6.2.2)
        position = first_item
        while position + 8 <= self.size:
            group, element, length = _TAG_LENGTH.unpack_from(self.buffer, position)
            tag = group << 16 | element
            position += 8
            if tag == _SEQUENCE_END:
                return position
            if tag != _ITEM:
                return None
            if length != _UNDEFINED:
                position += length
                continue
            end = self._item_end(position, depth)
            if end is None:
                return None
            position = end
        return None

    def _item_end(self, position: int, depth: int) -> int | None:
        """The position after an item of undefined length whose first element starts at `position`."""
        while position + 8 <= self.size:
            group, element = _TAG.unpack_from(self.buffer, position)
            if group << 16 | element == _ITEM_END:
                return position + 8
            header = self.element(position)
            if header is None:
                return None
            start, length = header
            if length == _UNDEFINED:
                end = self.sequence_end(position, start, depth + 1)
                if end is None:
                    return None
                position = end
            else:
                position = start + length
        return None


def _decode(raw: dict[str, bytes], syntax: str) -> HeaderAttributes | None:
    charset = raw.get("specific_character_set", b"").decode("ascii", "replace").strip(_PADDING)
    encoding = _TEXT_ENCODINGS.get(charset)
    if encoding is None:
        return None  # other repertoires (and code extensions): pydicom decodes them
    values: dict[str, object] = {"transfer_syntax_uid": syntax}
    for name, value in raw.items():
        try:
            text = value.decode(encoding)
        except UnicodeDecodeError:
            return None
        parts = [part.strip(_PADDING) for part in text.split("\\")]  # the value delimiter (PS3.5 6.4)
        if name in _MULTI_VALUED:
            values[name] = tuple(parts) if text.strip(_PADDING) else ()
        else:
            values[name] = "\\".join(parts)
    return HeaderAttributes(**values)  # type: ignore[arg-type]
