"""Is the node ready to take work: the checks behind ``/readyz`` (and the Health page's database line).

* ``database``: the database answers ``SELECT 1`` (a new transaction on the pool; an error's text is scrubbed);
* ``spool``: a small file can be created, written and removed in the spool's temporary folder
  (``<spool>/.incoming``, the folder every C-STORE is first written to): a read-only file system, missing
  permissions or a missing folder fail it. The file is named ``readyz-<random>.part``: one a crash leaves behind is
  removed with the other temporary files at the next start;
* ``spool_space``: the spool's disk has at least ``storage.min_free_mb`` free (below it every C-STORE is refused with
  0xA700).

Each check says why it failed, in words, without patient data.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import suppress
from dataclasses import dataclass

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from sarcoscreen.inference.error_text import error_text
from sarcoscreen.node.config import Settings
from sarcoscreen.node.spool import INCOMING_DIR

__all__ = ["Check", "Readiness", "check_database", "check_spool_space", "check_spool_writable", "readiness"]


@dataclass(frozen=True)
class Check:
    """One readiness check: its name, whether it passed, and what was found."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Readiness:
    """Every check; ready when all passed."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_json(self) -> dict[str, object]:
        """``{"ready": bool, "checks": {name: {"ok": bool, "detail": str}}}``."""
        return {"ready": self.ok,
                "checks": {check.name: {"ok": check.ok, "detail": check.detail} for check in self.checks}}


def _first_line(message: str) -> str:
    return (message.strip().splitlines() or [""])[0]


def check_database(db: Engine) -> Check:
    """The database answers ``SELECT 1``."""
    try:
        with db.connect() as connection:
            connection.execute(text("SELECT 1")).scalar_one()
    except SQLAlchemyError as exc:
        return Check("database", False, f"the database does not answer: {_first_line(error_text(exc))}")
    return Check("database", True, "answers")


def check_spool_writable(settings: Settings) -> Check:
    """A small file can be created, written and removed in the spool's temporary folder."""
    folder = settings.storage.spool / INCOMING_DIR
    probe = folder / f"readyz-{uuid.uuid4().hex[:12]}.part"
    try:
        with os.fdopen(settings.storage.modes.create_file(probe, exclusive=True), "wb") as handle:
            handle.write(b"ready\n")
        probe.unlink()
    except OSError as exc:
        reason = os.strerror(exc.errno).lower() if exc.errno is not None else str(exc)
        with suppress(OSError):  # cannot be removed now: the next start removes it with the other temporary files
            probe.unlink(missing_ok=True)
        return Check("spool", False, f"cannot write to {folder}: {reason}")
    return Check("spool", True, f"{folder} is writable")


def check_spool_space(settings: Settings) -> Check:
    """The spool's disk has at least ``storage.min_free_mb`` free."""
    storage = settings.storage
    try:
        free = shutil.disk_usage(storage.spool).free
    except OSError as exc:
        reason = os.strerror(exc.errno).lower() if exc.errno is not None else str(exc)
        return Check("spool_space", False, f"free space of {storage.spool} unknown: {reason}")
    detail = f"{free // 2**20} MiB free, reserve {storage.min_free_mb} MiB (storage.min_free_mb)"
    return Check("spool_space", free >= storage.min_free_mb * 2**20, detail)


def readiness(settings: Settings, db: Engine) -> Readiness:
    """All checks (see the module docstring)."""
    return Readiness((check_database(db), check_spool_writable(settings), check_spool_space(settings)))
