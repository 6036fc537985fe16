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

Folders and files are created with the configured modes (``storage.dir_mode``/``file_mode``, 0700/0600 by default:
`sarcoscreen.inference.file_modes`). A spool that cannot be written - a read-only file system (the kernel remounts a
failing disk read-only), no permission - raises `SpoolNotWritableError` (the SCP answers 0xA700); what is in it stays
readable, and a resent instance already kept is still a duplicate.

The spool is the source of truth: on start the node reconciles it with the database (`Spool.walk`); `file_damage`
tells a file that a crash or a bad copy left empty or cut short, so that it is quarantined rather than indexed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from sarcoscreen.inference.error_text import scrub_text
from sarcoscreen.inference.file_modes import PRIVATE, FileModes

__all__ = [
    "INCOMING_DIR",
    "InsufficientStorageError",
    "InvalidUidError",
    "Spool",
    "SpoolError",
    "SpoolNotWritableError",
    "StoredFile",
    "file_damage",
    "is_valid_uid",
]

logger = logging.getLogger(__name__)

INCOMING_DIR = ".incoming"
"""The spool's folder of temporary files being written (``*.part``: removed at start, never acknowledged)."""

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")


class SpoolError(Exception):
    """The spool could not store an instance."""


class InsufficientStorageError(SpoolError):
    """Less free disk than the configured reserve."""


class InvalidUidError(SpoolError):
    """A UID that is not a valid DICOM UID (PS3.5 9.1); never used as a file name."""


class SpoolNotWritableError(SpoolError):
    """The spool (or quarantine) cannot be written: read-only file system, no permission."""


_NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def _storage_error(exc: OSError, where: str) -> SpoolError:
    """The `SpoolError` for an `OSError` while writing to `where` ("the spool", "the quarantine")."""
    reason = os.strerror(exc.errno) if exc.errno is not None else str(exc)
    if exc.errno == errno.ENOSPC:
        return InsufficientStorageError(f"the disk of {where} is full ({reason.lower()})")
    if exc.errno in _NOT_WRITABLE:
        return SpoolNotWritableError(f"{where} is not writable ({reason.lower()})")
    return SpoolError(f"cannot write to {where}: {reason}")


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

    def __init__(self, root: Path, quarantine: Path, min_free_bytes: int = 0, *, modes: FileModes = PRIVATE) -> None:
        self.root = root
        self.quarantine_root = quarantine
        self.min_free_bytes = min_free_bytes
        self.modes = modes
        self._incoming = root / INCOMING_DIR
        for folder in (self._incoming, quarantine):
            try:
                modes.make_dirs(folder)
            except OSError as exc:
                raise SpoolNotWritableError(f"cannot create {folder}: {exc.strerror or exc}") from None

    def writable(self) -> bool:
        """Whether new files can be written into the spool now (``False`` on a read-only file system)."""
        return os.access(self.root, os.W_OK) and os.access(self._incoming, os.W_OK)

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
            with os.fdopen(self.modes.create_file(tmp, exclusive=True), "wb") as handle:
                handle.write(encoded)
                handle.flush()
                os.fsync(handle.fileno())
            if not final.parent.is_dir():
                self.modes.make_dirs(final.parent)
                _fsync_dir(self.root)  # the new series folder's own entry must be durable too
            if final.exists():  # another association stored it meanwhile
                tmp.unlink()
                return StoredFile(final, relative, final.stat().st_size, _sha256_of(final), duplicate=True)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise _storage_error(exc, "the spool") from None
        return StoredFile(final, relative, len(encoded), hashlib.sha256(encoded).hexdigest(), duplicate=False)

    def quarantine(self, encoded: bytes, reason: str, **facts: str) -> Path:
        """Keep `encoded` with the reason it was not accepted; returns the quarantined file's path.

        Raises `SpoolError` (`SpoolNotWritableError`, `InsufficientStorageError`) when it cannot be kept."""
        day = datetime.now(UTC).strftime("%Y%m%d")
        folder = self.quarantine_root / day
        name = uuid.uuid4().hex
        path = folder / f"{name}.dcm"
        note = {"reason": scrub_text(reason), "received": datetime.now(UTC).isoformat(timespec="seconds"), **facts}
        try:
            self.modes.make_dirs(folder)
            self.modes.write_bytes(path, encoded, durable=True)
            self.modes.write_text(folder / f"{name}.json", json.dumps(note, indent=2) + "\n")
        except OSError as exc:
            raise _storage_error(exc, "the quarantine") from None
        return path

    def walk(self) -> Iterator[tuple[str, str, str]]:
        """(series UID, SOP Instance UID, relative path) of every file in the spool."""
        for series_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name != INCOMING_DIR):
            for file in sorted(series_dir.glob("*.dcm")):
                if file.is_file():  # a folder named like an instance is not one
                    yield series_dir.name, file.stem, f"{series_dir.name}/{file.name}"

    def discard_incomplete(self) -> int:
        """Remove temporary files left by a crash mid-write (never acknowledged); returns how many. Files that
        cannot be removed now (a read-only spool) are logged and left for the next start."""
        removed, kept = 0, 0
        for part in self._incoming.glob("*.part"):
            try:
                part.unlink(missing_ok=True)
                removed += 1
            except OSError as exc:
                kept += 1
                reason = exc.strerror or str(exc)
        if kept:
            logger.warning("%d incomplete writes in %s cannot be removed (%s): left for the next start", kept,
                           self._incoming, reason.lower())
        return removed


def file_damage(path: Path) -> str | None:
    """Why the PS3.10 file at `path` is not whole, or ``None`` when it is: empty, cut short (a data element's
    length reaches beyond the end of the file, PS3.5 7.1; or it ends before its pixel data - every instance the
    spool takes is an image, PS3.4 B.5), or not readable as DICOM at all.

    The headers of all data elements are read, their values skipped (``defer_size=0``): a slice costs a few
    hundred small reads, not its pixel data. A file cut exactly after its pixel data cannot be told from a whole one
    (nothing after it is needed)."""
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty (0 bytes)"
        with path.open("rb") as handle:
            dataset = dcmread(handle, defer_size=0)
            end = handle.tell()
    except InvalidDicomError as exc:  # pydicom's own words, no value of the file in them
        return f"not readable as DICOM: {exc}"
    except Exception as exc:  # the bytes may be anything; other errors' texts may quote values: their kind only
        return f"not readable as DICOM ({type(exc).__name__})"
    if end > size:
        return f"truncated: {size} bytes, its data elements need {end}"
    if not any(tag in dataset for tag in _PIXEL_DATA_TAGS):
        return f"truncated: no pixel data in its {size} bytes"
    return None


_PIXEL_DATA_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)
"""Float Pixel Data, Double Float Pixel Data, Pixel Data."""


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
