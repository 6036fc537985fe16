"""The spool: where every received instance is made durable before it is acknowledged.

Write-before-acknowledge, in this order (the caller indexes the instance in SQL after `Spool.store` returns and
only then answers the C-STORE with Success):

1. refuse when the disk holding the spool has less than the reserve free (`InsufficientStorageError`,
   answered with 0xA700 "Out of resources");
2. write the encoded file (preamble + File Meta Information + dataset, PS3.10) to a temporary file in
   ``<spool>/.incoming/`` on the same file system, ``fsync`` it;
3. ``rename`` it atomically to ``<spool>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`` and ``fsync`` the folder
   (and the spool folder when the series folder is new), so that after a crash the file is either absent or
   complete.

A second copy of a SOP Instance UID already in the spool is not written again: the first copy is kept (a PACS
resending a series is normal) and the caller is told it was a duplicate. Instances that cannot be accepted go to
the quarantine folder with a JSON file giving the reason, so nothing acknowledged or refused is silently lost.

The spool is the source of truth: on start the node reconciles it with the database (`Spool.walk`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sarcoscreen.inference.error_text import scrub_text

__all__ = [
    "InsufficientStorageError",
    "InvalidUidError",
    "Spool",
    "SpoolError",
    "StoredFile",
    "is_valid_uid",
]

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")


class SpoolError(Exception):
    """The spool could not store an instance."""


class InsufficientStorageError(SpoolError):
    """Less free disk than the configured reserve."""


class InvalidUidError(SpoolError):
    """A UID that is not a valid DICOM UID (PS3.5 9.1); never used as a file name."""


def is_valid_uid(uid: str) -> bool:
    """A DICOM UID: dotted decimal without leading zeros, at most 64 characters (PS3.5 9.1)."""
    return len(uid) <= 64 and bool(_UID.match(uid))


@dataclass(frozen=True)
class StoredFile:
    """Where an instance lies in the spool."""

    path: Path
    relative_path: str
    """Relative to the spool root, with forward slashes: what the database stores."""
    size: int
    sha256: str
    duplicate: bool
    """``True`` when the SOP Instance UID was already in the spool; nothing was written."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """A folder of received instances, one sub-folder per series."""

    def __init__(self, root: Path, quarantine: Path, min_free_bytes: int = 0) -> None:
        self.root = root
        self.quarantine_root = quarantine
        self.min_free_bytes = min_free_bytes
        self._incoming = root / ".incoming"
        self._incoming.mkdir(parents=True, exist_ok=True)
        quarantine.mkdir(parents=True, exist_ok=True)

    def relative_path(self, series_uid: str, sop_uid: str) -> str:
        for name, uid in (("SeriesInstanceUID", series_uid), ("SOPInstanceUID", sop_uid)):
            if not is_valid_uid(uid):
                raise InvalidUidError(f"{name} {uid[:80]!r} is not a valid DICOM UID")
        return f"{series_uid}/{sop_uid}.dcm"

    def path_of(self, relative_path: str) -> Path:
        return self.root / relative_path

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def check_space(self, incoming_bytes: int = 0) -> None:
        """Raise `InsufficientStorageError` when storing `incoming_bytes` would leave less than the reserve."""
        free = self.free_bytes()
        if free - incoming_bytes < self.min_free_bytes:
            raise InsufficientStorageError(
                f"{free // 2**20} MiB free on the spool's disk, reserve is {self.min_free_bytes // 2**20} MiB"
            )

    def store(self, encoded: bytes, series_uid: str, sop_uid: str) -> StoredFile:
        """Make `encoded` (a complete PS3.10 file) durable under its UIDs; see the module docstring."""
        relative = self.relative_path(series_uid, sop_uid)
        final = self.root / relative
        if final.exists():
            return StoredFile(final, relative, final.stat().st_size, _sha256_of(final), duplicate=True)
        self.check_space(len(encoded))
        tmp = self._incoming / f"{uuid.uuid4().hex}.part"
        try:
            with tmp.open("wb") as handle:
                handle.write(encoded)
                handle.flush()
                os.fsync(handle.fileno())
            if not final.parent.is_dir():
                final.parent.mkdir(exist_ok=True)
                _fsync_dir(self.root)  # the new series folder's own entry must be durable too
            if final.exists():  # another association stored it meanwhile
                tmp.unlink()
                return StoredFile(final, relative, final.stat().st_size, _sha256_of(final), duplicate=True)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno == 28:  # ENOSPC
                raise InsufficientStorageError(f"the spool's disk is full: {exc.strerror}") from None
            raise SpoolError(f"cannot write to the spool: {exc.strerror}") from None
        return StoredFile(final, relative, len(encoded), hashlib.sha256(encoded).hexdigest(), duplicate=False)

    def quarantine(self, encoded: bytes, reason: str, **facts: str) -> Path:
        """Keep `encoded` with the reason it was not accepted; returns the quarantined file's path."""
        day = datetime.now(UTC).strftime("%Y%m%d")
        folder = self.quarantine_root / day
        folder.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        path = folder / f"{name}.dcm"
        with path.open("wb") as handle:
            handle.write(encoded)
            handle.flush()
            os.fsync(handle.fileno())
        note = {"reason": scrub_text(reason), "received": datetime.now(UTC).isoformat(timespec="seconds"), **facts}
        (folder / f"{name}.json").write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")
        return path

    def walk(self) -> Iterator[tuple[str, str, str]]:
        """(series UID, SOP Instance UID, relative path) of every file in the spool."""
        for series_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name != ".incoming"):
            for file in sorted(series_dir.glob("*.dcm")):
                yield series_dir.name, file.stem, f"{series_dir.name}/{file.name}"

    def discard_incomplete(self) -> int:
        """Remove temporary files left by a crash mid-write (never acknowledged); returns how many."""
        removed = 0
        for part in self._incoming.glob("*.part"):
            part.unlink(missing_ok=True)
            removed += 1
        return removed


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
