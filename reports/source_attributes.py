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
  PS3.3 C.7.2.1, C.7.3.1, C.7.4.1 and in the SEG's Referenced Series Sequence, C.10.4).

No value read here is logged: the headers hold patient data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError

from sarcoscreen.inference.volume import Volume

__all__ = ["TYPE2_COPIED", "SourceInstances", "SourceReferenceError", "read_source_instances"]

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


def _files(source: Path | Sequence[Path]) -> list[Path]:
    if not isinstance(source, str | Path):
        return [Path(p) for p in source]
    root = Path(source)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.upper() != "DICOMDIR"
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


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
    for path in _files(source):
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
    for ds in datasets:
        _normalise(ds)
    return SourceInstances(tuple(datasets), tuple(found[uid][1] for uid in wanted))
