"""Deterministic UIDs for the SEG, SR and key image of one analysis, so that a re-run replaces rather than
duplicates.

Every UID is a function of (UID root, source, engine name and version, settings digest, object kind), where the
*source* is the source series' SeriesInstanceUID or - for a series without one - the sorted SOP Instance UIDs of
its instances. The Series and SOP Instance UIDs of the SEG (and the SEG's Dimension Organization UID) also depend
on a digest of what the SEG is made of (`OutputContent.seg`: the label map, the source instances, the writer and
its options); those of the SR and the key image on that and a digest of the measurements (`OutputContent.report`:
everything measured, the height included). So the same inputs always give the same UIDs and the same bytes, and
any change of an object's content gives it new UIDs: an object re-sent under a UID is always the same object.
The Tracking UIDs (the SR's measurement groups, the SEG's segments) and the Device Observer UID identify the
structure, group or device, not an object, and stay the same when the content changes.

* Default root ``2.25``: ``2.25.<integer>`` where the integer is a name-based (SHA-1, version 5) UUID of the
  inputs (ISO/IEC 9834-8 and DICOM PS3.5 B.2 "UUID Derived UID"; at most 2 + 1 + 39 = 42 characters).
* A configured root (an organisation's registered prefix, at most 40 characters; ``[uids] root``):
  ``<root>.<decimal digest>``, the decimal digits of the SHA-256 of the inputs truncated so that the UID has at
  most 64 characters (PS3.5 9.1: at most 64 characters, components without leading zeros). With a 40-character
  root that leaves 23 digits (about 76 bits), enough that two different inputs practically never collide.

A re-sent instance with an existing SOP Instance UID replaces the stored one only where the receiver is set to
overwrite (Orthanc: ``OverwriteInstances``); other archives keep the first copy (see ``docs/dicom-outputs.md``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DEFAULT_ROOT", "OutputContent", "OutputUids", "content_digest", "derive_uid", "output_uids",
           "source_identity"]

DEFAULT_ROOT = "2.25"
_MAX_UID = 64
# Namespace of sarcoscreen's name-based UUIDs (itself a version-5 UUID of a fixed name in the URL namespace).
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:sarcoscreen:dicom-output-uids")


def derive_uid(root: str, *parts: str) -> str:
    """The UID under `root` for the ordered `parts` (see the module description)."""
    name = "\x1f".join(parts)  # unit separator: ("a", "bc") and ("ab", "c") differ
    if root == DEFAULT_ROOT:
        return f"{DEFAULT_ROOT}.{uuid.uuid5(_NAMESPACE, name).int}"
    digits = str(int.from_bytes(hashlib.sha256(f"{root}\x1f{name}".encode()).digest(), "big"))
    room = _MAX_UID - len(root) - 1
    if room < 10:
        raise ValueError(f"UID root {root!r} is too long to derive unique UIDs under it (at most 40 characters)")
    return f"{root}.{digits[:room]}"


def source_identity(series_instance_uid: str, sop_instance_uids: Sequence[str]) -> str:
    """What identifies the source: its SeriesInstanceUID, else the sorted SOP Instance UIDs of its instances."""
    if series_instance_uid:
        return f"series:{series_instance_uid}"
    return "instances:" + ",".join(sorted(set(sop_instance_uids)))


def content_digest(*parts: str | bytes | memoryview) -> str:
    """SHA-256 (hex) of the ordered `parts` (text, or bytes such as a label map's buffer, hashed without a copy),
    each prefixed with its length, so that no two sequences of parts give the same input to the hash."""
    sha = hashlib.sha256()
    for part in parts:
        data = memoryview(part.encode() if isinstance(part, str) else part).cast("B")
        sha.update(data.nbytes.to_bytes(8, "big"))
        sha.update(data)
    return sha.hexdigest()


@dataclass(frozen=True)
class OutputContent:
    """Digests (`content_digest`) of what the objects are made of; empty when not known (then the UIDs depend on
    the other inputs only)."""

    seg: str = ""
    """The SEG: label map, source instances, writer version and options."""
    report: str = ""
    """The SR and key image besides the SEG: the measurement report, writer version and options."""


@dataclass(frozen=True)
class OutputUids:
    """Series and SOP Instance UIDs of the three objects, plus the base of the SR's tracking UIDs."""

    seg_series: str
    seg_instance: str
    sr_series: str
    sr_instance: str
    key_image_series: str
    key_image_instance: str
    device_observer: str
    """Device Observer UID (TID 1004) of the SR: the analysis pipeline as an observer."""
    dimension_organization: str
    """The SEG's Dimension Organization UID (0020,9164), C.7.6.17 (highdicom would draw a random one)."""
    root: str
    base: tuple[str, ...]

    def tracking_uid(self, key: str) -> str:
        """Tracking Unique Identifier (DCM 112040) of one measured structure or group, also the SEG's Tracking
        UID (0062,0021) of the structure's segment."""
        return derive_uid(self.root, *self.base, "tracking", key)


def output_uids(root: str, source: str, engine_name: str, engine_version: str, settings_digest: str,
                content: OutputContent = OutputContent()) -> OutputUids:
    """All output UIDs of one analysis of `source` (`source_identity`) whose objects hold `content`."""
    base = (source, engine_name, engine_version, settings_digest)
    # No content digest (as before): the UIDs of the inputs alone, unchanged.
    seg = base if not content.seg else (*base, "seg-content", content.seg)
    report = base if not (content.seg or content.report) else (
        *base, "seg-content", content.seg, "report-content", content.report)

    def uid(parts: tuple[str, ...], kind: str) -> str:
        return derive_uid(root, *parts, kind)

    return OutputUids(
        seg_series=uid(seg, "seg-series"), seg_instance=uid(seg, "seg-instance"),
        sr_series=uid(report, "sr-series"), sr_instance=uid(report, "sr-instance"),
        key_image_series=uid(report, "key-image-series"), key_image_instance=uid(report, "key-image-instance"),
        device_observer=derive_uid(root, "device-observer", engine_name),
        dimension_organization=uid(seg, "dimension-organization"),
        root=root, base=base,
    )
