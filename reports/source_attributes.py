"""The source instances the DICOM outputs derive from: their headers, found by the SOP Instance UIDs of a `Volume`.

A `Volume` carries no patient data (by design). The SEG, SR and key image must nevertheless copy the Patient and
General Study modules of their source (PS3.3 C.7.1.1 Patient, C.7.2.1 General Study; a derived object belongs to
the source's patient and study), reference every source instance and share its Frame of Reference. So the
writers are given the source headers, read here from the files without pixel data.

What this module guarantees to the writers (`SourceInstances`):

* one header per source instance, in the order of the volume's slices (a multi-frame instance once);
* SOPClassUID and SOPInstanceUID present, taken from the File Meta Information (0002,0002/0003) when the data
  set's own are empty (as in some de-identified data); the loader does the same;
* the Type 2 attributes that the writers copy are present, empty when the source lacks them (PatientName,
  PatientID, PatientBirthDate, PatientSex, StudyDate, StudyTime, ReferringPhysicianName, StudyID,
  AccessionNumber): a source without them still gives valid objects;
* StudyInstanceUID, SeriesInstanceUID and FrameOfReferenceUID are non-empty, else `SourceReferenceError`: a
  derived object cannot be placed in the source's study or reference its series without them (Type 1 in
  PS3.3 C.7.2.1, C.7.3.1, C.7.4.1 and in the SEG's Referenced Series Sequence, C.10.4);
* every attribute the writers copy holds a value valid for its VR (`vr_validation`): the top-level attributes of
  the Patient and Study modules of the source's IOD - what highdicom copies into a SEG or SR
  (``copy_patient_and_study_information``), a superset of what the key image copies. Real PACS data holds
  malformed values there (``1901-02-03`` as a DA), and highdicom refuses them (``Unable to convert ...``) or
  writes objects that fail validation. A malformed value is repaired when its DICOM form is unambiguous (an ISO
  date, a time with colons, a code string in lower case), else left empty (Type 2) or left out (Type 3); a copied
  sequence with a malformed value in an item is left out. `SourceInstances.notes` says per attribute what was done
  - names and tags only.

No value read here is logged or put into a note or an exception: the headers hold patient data. Malformed values
are read from their raw bytes, not converted by pydicom (whose conversion warns and logs with the value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.datadict import dictionary_VM, dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag, Tag

from sarcoscreen.inference.dicom_files import find_dicom_files
from sarcoscreen.inference.volume import Volume
from sarcoscreen.reports.vr_validation import check, encodings_of, repair, value_ok

__all__ = ["TYPE2_COPIED", "SourceInstances", "SourceReferenceError", "copied_keywords", "read_source_instances"]

TYPE2_COPIED = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber",
)
"""Type 2 attributes of the Patient and General Study modules that the writers copy (empty when absent)."""

_REQUIRED_UIDS = {
    "StudyInstanceUID": "(0020,000D)",
    "SeriesInstanceUID": "(0020,000E)",
    "FrameOfReferenceUID": "(0020,0052)",
}


class SourceReferenceError(Exception):
    """The source instances cannot be referenced by derived objects; the message says which attribute is missing."""


@dataclass(frozen=True)
class SourceInstances:
    """Headers of the source instances, in the volume's slice order (one per instance)."""

    datasets: tuple[Dataset, ...]
    paths: tuple[Path, ...]
    notes: tuple[str, ...] = ()
    """Per malformed copied attribute, what the outputs hold instead (``PatientBirthDate (0010,0030): not a valid DA
    value; written in DICOM form``); attribute names and tags, never values."""

    @property
    def first(self) -> Dataset:
        return self.datasets[0]

    @property
    def study_instance_uid(self) -> str:
        return str(self.first.StudyInstanceUID)

    @property
    def series_instance_uid(self) -> str:
        return str(self.first.SeriesInstanceUID)

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.first.FrameOfReferenceUID)


def _header(path: Path) -> Dataset | None:
    try:
        ds = dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, KeyError, AttributeError):
        return None  # not DICOM or unreadable: the loader skipped it too
    meta = getattr(ds, "file_meta", Dataset())
    if not ds.get("SOPInstanceUID"):
        ds.SOPInstanceUID = meta.get("MediaStorageSOPInstanceUID", "")
    if not ds.get("SOPClassUID"):
        ds.SOPClassUID = meta.get("MediaStorageSOPClassUID", "")
    return ds


@cache
def copied_keywords(sop_class_uid: str) -> tuple[str, ...]:
    """The top-level attributes of the Patient and Study modules of the IOD of `sop_class_uid` (what highdicom copies
    into a derived object), and `TYPE2_COPIED`. Read from highdicom's own module tables, so that the check covers
    exactly what is copied; an unknown SOP class gives the Patient module's group (0010,xxxx) attributes too."""
    from highdicom._standard_utils import get_iod_module_map, get_module_attribute_map, get_sop_class_iod_map

    keywords = dict.fromkeys(TYPE2_COPIED)
    iod = get_sop_class_iod_map().get(sop_class_uid)
    modules = get_iod_module_map().get(iod, []) if iod else []
    for module in modules:
        if module["ie"] in ("Patient", "Study"):
            for item in get_module_attribute_map()[module["key"]]:
                if not item["path"]:
                    keywords[str(item["keyword"])] = None
    if not modules:
        from pydicom.datadict import DicomDictionary

        keywords.update((entry[4], None) for tag, entry in DicomDictionary.items() if tag >> 16 == 0x0010)
    return tuple(keywords)


@cache
def _copied_tags(sop_class_uid: str) -> tuple[tuple[str, BaseTag], ...]:
    return tuple((keyword, Tag(tag_for_keyword(keyword))) for keyword in copied_keywords(sop_class_uid))


def _is_sequence(ds: Dataset, tag: BaseTag) -> bool:
    """Whether `tag` of `ds` is a sequence, without converting the element (conversion validates, and warns with the
    value)."""
    vr = ds.get_item(tag).VR
    if vr:
        return vr == "SQ"
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


def _sequence_ok(items: Sequence[Dataset], encodings: list[str]) -> bool:
    for item in items:
        for tag in item.keys():  # noqa: SIM118 - iterating a Dataset itself converts every element
            if _is_sequence(item, tag):
                if not _sequence_ok(item[tag].value, encodings):
                    return False
                continue
            checked = check(item, tag, keyword_for_tag(tag), encodings)
            if checked is not None and not checked.valid:
                return False
    return True


def _repair_copied(ds: Dataset, notes: dict[str, None]) -> None:
    """Repair, empty or remove each malformed copied attribute of `ds` (see the module docstring); `notes` gets
    what was done."""
    encodings = encodings_of(ds)
    for keyword, tag in _copied_tags(str(ds.get("SOPClassUID", ""))):
        if tag not in ds:
            continue
        name = f"{keyword} ({tag.group:04X},{tag.element:04X})"
        if _is_sequence(ds, tag):
            if not _sequence_ok(ds[tag].value or [], encodings):
                del ds[tag]
                notes[f"{name}: an item holds a value that is not valid for its VR; left out"] = None
            continue
        checked = check(ds, tag, keyword, encodings)
        if checked is None or checked.valid:
            continue
        repaired = [value if value_ok(checked.vr, value, keyword) else repair(checked.vr, value, keyword)
                    for value in checked.values]
        fits = dictionary_VM(tag) != "1" or len(repaired) <= 1
        if checked.values and fits and all(r is not None for r in repaired):
            ds[tag] = DataElement(tag, checked.vr, "\\".join(repaired))  # type: ignore[arg-type]
            action = "written in DICOM form"
        elif keyword in TYPE2_COPIED:
            ds[tag] = DataElement(tag, checked.vr, None)
            action = "left empty"
        else:
            del ds[tag]
            action = "left out"
        notes[f"{name}: not a valid {checked.vr} value; {action}"] = None


def _normalise(ds: Dataset) -> None:
    for keyword in TYPE2_COPIED:
        if keyword not in ds:
            setattr(ds, keyword, None)  # present and empty (zero length), as Type 2 allows
    # An empty Specific Character Set (0008,0005) means the default repertoire, as if absent (C.12.1.1.2);
    # the writers copy the attribute and would refuse an empty value.
    if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
        del ds.SpecificCharacterSet


def read_source_instances(source: Path | Sequence[Path], volume: Volume) -> SourceInstances:
    """Headers of the instances of `volume`, found among the files under `source` (a folder, a file or files).

    Raises `SourceReferenceError` when an instance of the volume is not among the files, or the source lacks a
    StudyInstanceUID, SeriesInstanceUID or FrameOfReferenceUID.
    """
    wanted: list[str] = list(dict.fromkeys(s.sop_instance_uid for s in volume.slices))
    if any(not uid for uid in wanted):
        raise SourceReferenceError(
            "a slice of the source series has no SOP Instance UID (0008,0018), neither in its data set nor in "
            "its File Meta Information: derived objects cannot reference it"
        )
    found: dict[str, tuple[Dataset, Path]] = {}
    remaining = set(wanted)
    for path in find_dicom_files(source):
        if not remaining:
            break
        ds = _header(path)
        if ds is None:
            continue
        uid = str(ds.SOPInstanceUID)
        if uid in remaining:
            found[uid] = (ds, path)
            remaining.discard(uid)
    if remaining:
        raise SourceReferenceError(
            f"{len(remaining)} instance(s) of the analysed volume are not among the files of {source}"
        )
    datasets = [found[uid][0] for uid in wanted]
    for keyword, tag in _REQUIRED_UIDS.items():
        values = {str(ds.get(keyword, "") or "") for ds in datasets}
        if "" in values:
            raise SourceReferenceError(
                f"the source series has no {keyword} {tag}: a DICOM-SEG, SR or key image must carry the "
                f"source's {keyword} to belong to its study and reference it (PS3.3 C.7.2.1, C.7.3.1, C.7.4.1), "
                "and inventing one would reference a study or series that does not exist"
            )
        if len(values) > 1:
            raise SourceReferenceError(f"the source instances disagree in {keyword} {tag}")
    notes: dict[str, None] = {}
    for ds in datasets:
        _repair_copied(ds, notes)
        _normalise(ds)
    return SourceInstances(tuple(datasets), tuple(found[uid][1] for uid in wanted), tuple(notes))
