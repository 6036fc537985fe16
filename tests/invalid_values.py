"""Invalid values, as real PACS data has them, for every Patient and Study attribute the DICOM outputs copy.

`INVALID` holds one malformed value per copied attribute of each VR the copy has to survive (DA, TM, DT, PN, AS,
DS, IS and the CS with enumerated values): the top-level attributes of the Patient, General Study and Patient
Study modules, and - DT and IS occur only inside their sequences - a code item's Context Group Version (DT) and a
referenced frame number (IS). Each entry says what the outputs must hold instead: the value repaired into DICOM
form, or nothing (left empty when the attribute is Type 2, left out otherwise).

`write_invalid_values` writes them as raw bytes (pydicom would refuse to set most of them) into a data set, so
the test files carry exactly these bytes, as a PACS would send them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

__all__ = ["INVALID", "NESTED_INVALID", "Invalid", "invalid_series_transform", "markers", "without_uids",
           "write_invalid_values"]


@dataclass(frozen=True)
class Invalid:
    keyword: str
    value: str
    """The malformed value as the source holds it (distinct from every other value in the test series)."""
    repaired: str | None = None
    """What the outputs hold instead; ``None``: empty (Type 2) or absent."""


INVALID: tuple[Invalid, ...] = (
    # DA: an ISO date (repairable), an impossible date, a word
    Invalid("PatientBirthDate", "1901-02-03", repaired="19010203"),
    Invalid("StudyDate", "20241345"),
    Invalid("LastMenstrualDate", "yesterday"),
    # TM: the ACR-NEMA form with colons (repairable), an impossible time
    Invalid("StudyTime", "10:17:00", repaired="101700"),
    Invalid("PatientBirthTime", "25:61:99"),
    # PN: too many components, a group longer than 64, a control character, a backslash where VM is 1
    Invalid("PatientName", "DOE^JOHN^A^B^C^D"),
    Invalid("ReferringPhysicianName", "REFERRER" * 9),
    Invalid("OtherPatientNames", "ROE^JANE\x07"),
    Invalid("ResponsiblePerson", "KEEPER^^^^^X"),
    Invalid("ConsultingPhysicianName", "CONSULT^A^B^C^D^E"),
    Invalid("PhysiciansOfRecord", "RECORD" * 11),
    Invalid("NameOfPhysiciansReadingStudy", "READER^\x1b\x0aX"),
    # AS: words instead of nnnY
    Invalid("PatientAge", "71 years"),
    # DS: a decimal comma, a word, more than 16 characters, not a number, two numbers where VM is 1
    Invalid("PatientSize", "1,62"),
    Invalid("PatientWeight", "seventy"),
    Invalid("MeasuredAPDimension", "123456789.0123456"),
    Invalid("MeasuredLateralDimension", "NaN"),
    Invalid("PatientBodyMassIndex", "22.5\\23.5"),
    # CS with enumerated values: lower case, a word outside the enumeration
    Invalid("PatientSex", "female"),
    Invalid("SmokingStatus", "SOMETIMES"),
    Invalid("PatientIdentityRemoved", "maybe"),
)
"""Top-level copied attributes with malformed values."""

NESTED_INVALID: dict[str, tuple[str, str, str]] = {
    # sequence keyword: (attribute inside the item, VR, malformed value)
    "ProcedureCodeSequence": ("ContextGroupVersion", "DT", "2024-01-02 10:00"),
    "ReferencedPatientPhotoSequence": ("ReferencedFrameNumber", "IS", "seven"),
}
"""Copied sequences whose item holds a malformed DT or IS (the only places these VRs occur in the copied modules)."""


def _raw(keyword: str, text: str) -> RawDataElement:
    tag = tag_for_keyword(keyword)
    data = text.encode("latin-1")
    data += b" " * (len(data) % 2)
    return RawDataElement(tag, dictionary_VR(tag), len(data), data, 0, False, True)  # type: ignore[arg-type]


def _nested(sequence: str, keyword: str, text: str) -> list[Dataset]:
    item = Dataset()
    if sequence == "ProcedureCodeSequence":
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "P5-0080C", "SRT", "CT of pelvis"
        item.MappingResource = "DCMR"
    else:
        reference = Dataset()
        reference.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        reference.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        reference[tag_for_keyword(keyword)] = _raw(keyword, text)
        item.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2"
        item.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.3"
        item.ReferencedSOPSequence = [reference]
        return [item]
    item[tag_for_keyword(keyword)] = _raw(keyword, text)
    return [item]


def write_invalid_values(ds: Dataset, entries: tuple[Invalid, ...] = INVALID, *, nested: bool = True) -> None:
    """Put the raw malformed `entries` (and, with `nested`, the sequences of `NESTED_INVALID`) into `ds`."""
    for entry in entries:
        ds[tag_for_keyword(entry.keyword)] = _raw(entry.keyword, entry.value)
    if nested:
        for sequence, (keyword, _, text) in NESTED_INVALID.items():
            setattr(ds, sequence, _nested(sequence, keyword, text))


def invalid_series_transform(entries: tuple[Invalid, ...] = INVALID, *, nested: bool = True):  # type: ignore[no-untyped-def]
    """A `write_ct_series` transform that writes `entries` into every slice."""

    def transform(ds: Dataset, _: int) -> None:
        write_invalid_values(ds, entries, nested=nested)

    return transform


def markers(entries: tuple[Invalid, ...] = INVALID) -> list[str]:
    """Strings that must appear in no log line and no database text: every malformed value, its repaired form,
    and the recognisable parts of the names."""
    found = set()
    for entry in entries:
        found.add(entry.value.strip("\x07\x1b\x0a"))
        if entry.repaired:
            found.add(entry.repaired)
    found |= {"DOE^JOHN", "ROE^JANE", "KEEPER", "CONSULT", "REFERRER", "RECORD", "READER"}
    found |= {text for _, _, text in NESTED_INVALID.values()}
    return sorted(found)


_UID = re.compile(r"\d+(?:\.\d+){3,}")


def without_uids(text: str) -> str:
    """`text` without UIDs: their random digits could hold a numeric marker by chance."""
    return _UID.sub("<uid>", text)
