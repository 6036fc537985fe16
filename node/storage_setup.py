"""The node's storage at start-up (``serve``/``run``): folders created with the configured modes, the modes of what
is already there checked, and a spool that cannot be written told before the first C-STORE.

`prepare_storage` runs first, before the database is migrated:

1. the spool (with ``.incoming``), the quarantine and the outputs folder are created when missing, and the SQLite
   database file (SQLite gives its ``-wal``/``-shm`` files the database file's mode), all with ``storage.dir_mode``
   / ``storage.file_mode`` (`sarcoscreen.inference.file_modes`);
2. `check_modes` looks at the storage roots - ``data_dir``, the spool, the quarantine, the outputs folder, the
   SQLite file and its journal files, the log file and its rotated files - and at the immediate children of the
   folders among them (at most `CHILDREN_CHECKED` each: a spool of a million files is not walked at every start).
   Each one granting group or others more than the configured mode is logged as a warning naming the path, its
   mode and the ``chmod`` that fixes it, plus one ``find`` line per root for what lies deeper. Existing files are
   never changed by the node. With ``storage.strict_modes`` the node then refuses to start;
3. a spool that is not writable (a read-only file system, no permission) is logged as an error: the node starts -
   what it holds is analysed and the outputs are sent - but every new instance is refused with 0xA700.

Parent folders of a configured path (``/var/log`` above a log file, ``/srv`` above a spool) are not the node's
and are not checked.
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from sarcoscreen.db.session import prepare_sqlite_file, sqlite_file
from sarcoscreen.inference.file_modes import FileModes
from sarcoscreen.node.config import Settings
from sarcoscreen.node.spool import Spool, SpoolError

__all__ = ["CHILDREN_CHECKED", "ModeFinding", "StorageSetupError", "check_modes", "prepare_storage",
           "unwritable_reason"]

logger = logging.getLogger(__name__)

CHILDREN_CHECKED = 200
"""Immediate children looked at per folder root."""


class StorageSetupError(Exception):
    """The node's folders cannot be made, or their modes are wider than configured with ``strict_modes``."""


@dataclass(frozen=True)
class ModeFinding:
    """A storage path whose mode grants group or others more than the configuration."""

    path: Path
    mode: int
    allowed: int
    setting: str
    """``storage.file_mode`` or ``storage.dir_mode``."""

    @property
    def fix(self) -> str:
        return f"chmod {self.allowed:04o} {shlex.quote(str(self.path))}"

    def describe(self) -> str:
        return (f"{self.path} has mode {self.mode:04o}, wider than {self.setting} {self.allowed:04o}: "
                f"run '{self.fix}'")


def prepare_storage(settings: Settings) -> Spool:
    """Steps 1-3 of the module docstring; returns the spool. Raises `StorageSetupError`."""
    storage = settings.storage
    modes = storage.modes
    try:
        spool = Spool(storage.spool, storage.quarantine, storage.min_free_mb * 2**20, modes=modes)
        modes.make_dirs(storage.outputs)
        prepare_sqlite_file(settings.database_url, modes)
    except SpoolError as exc:
        raise StorageSetupError(str(exc)) from None
    except OSError as exc:
        raise StorageSetupError(f"cannot create {exc.filename}: {exc.strerror or exc}") from None
    findings = check_modes(settings)
    for finding in findings:
        logger.warning("%s", finding.describe())
    for root in sorted({_root_of(finding.path, settings) for finding in findings} - {None}, key=str):
        logger.warning("what lies deeper in %s is likely as open: find %s -type d -exec chmod %04o {} + ; "
                       "find %s -type f -exec chmod %04o {} +", root, shlex.quote(str(root)), modes.directory,
                       shlex.quote(str(root)), modes.file)
    if findings and storage.strict_modes:
        raise StorageSetupError(f"{len(findings)} storage paths have wider modes than configured and "
                                "storage.strict_modes is on (see the warnings above); fix them or turn it off")
    _tell_unwritable("the spool", spool.root, "every C-STORE will be refused with 0xA700 until it is", logging.ERROR)
    _tell_unwritable("the quarantine", storage.quarantine, "refused instances are not kept until it is",
                     logging.WARNING)
    _tell_unwritable("the outputs folder", storage.outputs, "jobs will fail until it is", logging.WARNING)
    return spool


def check_modes(settings: Settings) -> list[ModeFinding]:
    """Every storage path (see the module docstring) whose mode is wider than configured."""
    modes = settings.storage.modes
    findings: list[ModeFinding] = []
    seen: set[Path] = set()
    for root, is_folder_root in _roots(settings):
        for path, status in _with_children(root, is_folder_root):
            if path in seen:
                continue
            seen.add(path)
            finding = _finding(path, status, modes)
            if finding is not None:
                findings.append(finding)
    return findings


def _roots(settings: Settings) -> Iterator[tuple[Path, bool]]:
    """(path, whether its children are looked at too)."""
    storage = settings.storage
    for folder in (storage.data_dir, storage.spool, storage.quarantine, storage.outputs):
        yield folder, True
    database = sqlite_file(settings.database_url)
    if database is not None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            yield database.with_name(database.name + suffix), False
    log_file = settings.logging.file
    if log_file is not None:
        yield log_file, False
        yield from ((rotated, False) for rotated in islice(log_file.parent.glob(f"{log_file.name}.*"),
                                                            CHILDREN_CHECKED))


def _with_children(root: Path, is_folder_root: bool) -> Iterator[tuple[Path, os.stat_result]]:
    try:
        status = root.stat()
    except OSError:
        return  # not there (yet): nothing to check
    yield root, status
    if not (is_folder_root and stat.S_ISDIR(status.st_mode)):
        return
    try:
        with os.scandir(root) as entries:
            for entry in islice(entries, CHILDREN_CHECKED):
                try:
                    child = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if not stat.S_ISLNK(child.st_mode):
                    yield Path(entry.path), child
    except OSError:
        return


def _finding(path: Path, status: os.stat_result, modes: FileModes) -> ModeFinding | None:
    folder = stat.S_ISDIR(status.st_mode)
    allowed = modes.directory if folder else modes.file
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o077 & ~allowed:
        return ModeFinding(path, mode, allowed, "storage.dir_mode" if folder else "storage.file_mode")
    return None


def _root_of(path: Path, settings: Settings) -> Path | None:
    """The folder root below which `path` lies (its children are like it), or ``None``."""
    storage = settings.storage
    for root in (storage.spool, storage.quarantine, storage.outputs):
        if root in (path, path.parent):
            return root
    return None


def unwritable_reason(folder: Path) -> str | None:
    """Why new files cannot be made in `folder` ("read-only file system", "permission denied"), or ``None`` when
    they can (or the folder does not exist)."""
    if not folder.is_dir() or os.access(folder, os.W_OK):
        return None
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return "read-only file system" if read_only else "permission denied"


def _tell_unwritable(what: str, folder: Path, consequence: str, level: int) -> None:
    reason = unwritable_reason(folder)
    if reason is not None:
        logger.log(level, "%s %s is not writable (%s): %s", what, folder, reason, consequence)
