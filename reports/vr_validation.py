"""Is a data element's value valid for its Value Representation (PS3.5 6.2)? Checked on the element as read, and
repaired where the malformation is common and unambiguous.

The DICOM outputs copy the source's Patient and Study attributes, and real PACS data holds malformed values in
them (``1901-02-03`` as a DA, ``10:17:00`` as a TM, a decimal comma in a DS, six components in a PN). `check`
reads an element from its raw bytes when pydicom has not converted it yet - converting runs pydicom's own
validation, which warns and logs *with the value* - and says whether every value is valid. `repair` returns the
DICOM form of a value whose meaning is unambiguous, else ``None``:

* DA ``YYYY-MM-DD``, ``YYYY.MM.DD`` (the ACR-NEMA form) or ``YYYY/MM/DD`` -> ``YYYYMMDD`` when it is a date;
* TM ``HH:MM[:SS[.FFFFFF]]`` (ACR-NEMA) -> ``HHMM[SS[.FFFFFF]]`` when it is a time;
* CS in lower case -> upper case when the result is valid (``f`` -> ``F``).

Nothing else is guessed: ``1,62`` could be 1.62 or 162, ``71 years`` has no unique AS form, a name with too many
components cannot be split back. The rules per VR are PS3.5 Table 6.2-1 (character repertoire, length, format);
`ENUMERATED` adds the Enumerated Values of the copied CS attributes (PS3.3 C.7.1.1, C.7.2.2), which dciodvfy checks.
Values are never logged or put into exception texts here.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VM, dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

__all__ = ["ENUMERATED", "Checked", "check", "encodings_of", "repair", "value_ok"]

ENUMERATED: dict[str, frozenset[str]] = {
    "PatientSex": frozenset({"M", "F", "O"}),
    "TypeOfPatientID": frozenset({"TEXT", "RFID", "BARCODE"}),
    "QualityControlSubject": frozenset({"YES", "NO"}),
    "PatientIdentityRemoved": frozenset({"YES", "NO"}),
    "SmokingStatus": frozenset({"YES", "NO", "UNKNOWN"}),
    "PatientSexNeutered": frozenset({"ALTERED", "UNALTERED"}),
}
"""Enumerated Values of CS attributes of the Patient and Patient Study modules (PS3.3 C.7.1.1, C.7.2.2)."""

_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"})
_TEXT_VRS = {"LO": 64, "SH": 16, "LT": 10240, "ST": 1024, "UT": 0xFFFFFFFE, "UC": 0xFFFFFFFE, "PN": 0}
_SINGLE_VALUED = frozenset({"LT", "ST", "UT", "UR"})  # a backslash is text, not a delimiter
_BINARY = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "UV": 8, "SV": 8, "AT": 4}
_CONTROL = re.compile(r"[\x00-\x1a\x1c-\x1f\x7f]")  # control characters other than ESC (0x1B)
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")  # LT, ST, UT also allow TAB, LF, FF, CR
_PATTERNS = {
    "AS": re.compile(r"\d{3}[DWMY]"),
    "CS": re.compile(r"[A-Z0-9 _]{0,16}"),
    "DS": re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"),
    "IS": re.compile(r"[+-]?\d{1,11}"),
    "UI": re.compile(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))*"),
    "TM": re.compile(r"([01]\d|2[0-3])([0-5]\d(([0-5]\d|60)(\.\d{1,6})?)?)?"),
    "DT": re.compile(r"\d{4}((0[1-9]|1[0-2])((0[1-9]|[12]\d|3[01])(([01]\d|2[0-3])([0-5]\d(([0-5]\d|60)(\.\d{1,6})?)?)?"
                     r")?)?)?([+-](0\d|1[0-4])[0-5]\d)?"),
}
_MAX_LENGTH = {"AE": 16, "CS": 16, "DS": 16, "IS": 12, "UI": 64, "DT": 26, "TM": 14}
_ISO_DATE = re.compile(r"(\d{4})([-./])(\d{2})\2(\d{2})")
_COLON_TIME = re.compile(r"(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?")


@dataclass(frozen=True)
class Checked:
    """An element's values as text, and whether each is valid for the VR."""

    vr: str
    values: tuple[str, ...]
    valid: bool
    """Every value valid, and no more values than the attribute's VM allows."""


def _date_ok(text: str) -> bool:
    if not re.fullmatch(r"\d{8}", text):
        return False
    try:
        datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return False
    return True


def _datetime_ok(text: str) -> bool:
    if len(text) > _MAX_LENGTH["DT"] or not _PATTERNS["DT"].fullmatch(text):
        return False
    return len(text) < 8 or not text[:8].isdigit() or _date_ok(text[:8])


def _pn_ok(text: str) -> bool:
    groups = text.split("=")
    return (len(groups) <= 3 and not _CONTROL.search(text)
            and all(len(group) <= 64 and group.count("^") <= 4 for group in groups))


def _number_ok(vr: str, text: str) -> bool:
    if len(text) > _MAX_LENGTH[vr] or not _PATTERNS[vr].fullmatch(text):
        return False
    if vr == "IS":
        return -(2**31) <= int(text) < 2**31
    return math.isfinite(float(text))


def value_ok(vr: str, text: str, keyword: str = "") -> bool:
    """One value (no backslash, padding removed) valid for `vr`; empty is valid (an empty value of a
    multi-valued element)."""
    if text == "":
        return True
    if vr == "DA":
        return _date_ok(text)
    if vr == "DT":
        return _datetime_ok(text)
    if vr == "PN":
        return _pn_ok(text)
    if vr in ("DS", "IS"):
        return _number_ok(vr, text)
    if vr in _PATTERNS:
        ok = len(text) <= _MAX_LENGTH.get(vr, 64) and bool(_PATTERNS[vr].fullmatch(text))
        return ok and (vr != "CS" or keyword not in ENUMERATED or text in ENUMERATED[keyword])
    if vr == "AE":
        return len(text) <= 16 and not _CONTROL.search(text)
    if vr in _TEXT_VRS:
        control = _TEXT_CONTROL if vr in _SINGLE_VALUED else _CONTROL
        return len(text) <= _TEXT_VRS[vr] and not control.search(text)
    return True


def _strip(vr: str, text: str) -> str:
    if vr in ("DS", "IS"):
        return text.strip(" ")
    if vr == "UI":
        return text.rstrip("\x00 ")
    if vr in _SINGLE_VALUED:
        return text.rstrip(" ")
    return text.rstrip(" ") if vr in _TEXT_VRS else text.rstrip(" ").rstrip("\x00")


def _decode(raw: bytes, vr: str, encodings: Sequence[str]) -> str | None:
    """`raw` as text, ``None`` when it is not text in the data set's character set. One character set: decoded
    strictly here (an ESC is then no code extension: PS3.5 6.1.2.5.3); code extensions (ISO 2022): by pydicom."""
    if vr in _ASCII_VRS or len(encodings) == 1:
        try:
            text = raw.decode("ascii" if vr in _ASCII_VRS else encodings[0])
        except (UnicodeDecodeError, LookupError):
            return None
        return None if "\x1b" in text else text
    return decode_bytes(raw, encodings, {0x5C, 0x3D, 0x5E} if vr == "PN" else {0x5C})


def _texts(element: DataElement | RawDataElement, vr: str, encodings: Sequence[str]) -> tuple[str, ...] | None:
    """The values of `element` as text (``None``: not decodable); raw bytes are decoded here, not by pydicom."""
    if isinstance(element, RawDataElement):
        raw = element.value or b""
        if vr in _BINARY:
            return () if len(raw) % _BINARY[vr] == 0 else None
        text = _decode(bytes(raw), vr, encodings)
        if text is None:
            return None
        parts = [text] if vr in _SINGLE_VALUED else text.split("\\")
    else:
        value = element.value
        if vr in _BINARY or value is None or value == "":
            return ()
        parts = [str(v) for v in value] if isinstance(value, MultiValue | list | tuple) else [str(value)]
    if parts == [""]:
        return ()
    return tuple(_strip(vr, part) for part in parts)


def encodings_of(ds: Dataset) -> list[str]:
    """The Python codecs of the data set's Specific Character Set (0008,0005) (default repertoire when absent)."""
    return convert_encodings(ds.get("SpecificCharacterSet") or "ISO_IR 6")


def check(ds: Dataset, tag: BaseTag, keyword: str = "", encodings: Sequence[str] | None = None) -> Checked | None:
    """The element `tag` of `ds` checked against its VR and VM; ``None`` for a sequence or a VR not checked here.
    `encodings`: those of the data set holding `ds` when `ds` is a sequence item (default: `ds`'s own)."""
    element = ds.get_item(tag)
    vr = element.VR
    if not vr or vr in ("UN", "OB", "OW", "OD", "OF", "OL", "OV"):
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return None
    if vr == "SQ" or "or" in vr:
        return None
    texts = _texts(element, vr, encodings if encodings is not None else encodings_of(ds))
    if texts is None:
        return Checked(vr, (), False)
    try:
        single = dictionary_VM(tag) == "1"
    except KeyError:
        single = False
    valid = all(value_ok(vr, t, keyword) for t in texts) and not (single and len(texts) > 1)
    return Checked(vr, texts, valid)


def repair(vr: str, text: str, keyword: str = "") -> str | None:
    """The DICOM form of a malformed `text` when it is unambiguous (see the module docstring), else ``None``."""
    candidate: str | None = None
    if vr == "DA" and (match := _ISO_DATE.fullmatch(text.strip())):
        candidate = match.group(1) + match.group(3) + match.group(4)
    elif vr == "TM" and (match := _COLON_TIME.fullmatch(text.strip())):
        candidate = "".join(part or "" for part in match.groups())
    elif vr == "CS":
        candidate = text.strip().upper()
    if candidate is not None and candidate != text and value_ok(vr, candidate, keyword):
        return candidate
    return None
