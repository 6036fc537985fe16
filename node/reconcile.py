"""Start-up reconciliation of the spool (the source of truth) with the instance index in SQL.

Run by ``sarcoscreen serve`` / ``run`` before the SCP listens:

1. temporary files left in ``<spool>/.incoming`` by a crash mid-write are removed (they were never
   acknowledged, so the sender still has them);
2. every spool file without an ``instances`` row is indexed from its header - e.g. an instance that was stored
   but could not be indexed (the SCP answered 0xA700, the file stayed) or a crash between rename and commit. Its
   series then goes (back) to ``receiving`` and through the stability and routing steps like any new instance;
3. rows whose file is gone are marked ``missing file`` (unless the retention purged it: ``purged``); rows whose
   file has another size (or, with
   `verify_checksums`, another SHA-256) are marked ``changed file``; a row marked before whose file is back
   and unchanged is ``stored`` again;
4. a file that cannot be read as DICOM, is empty or cut short (`sarcoscreen.node.spool.file_damage`: a crash, a
   full disk or a bad copy), or whose UIDs do not match its place in the spool, is moved to the quarantine with
   the reason - never indexed. On a read-only spool it is left in place, not indexed, and logged;
5. a file whose SOP Instance UID is indexed under another series, or is in the spool under another series in an
   older file, is quarantined with the reason and an ``instance.conflict`` event: the first received is kept
   (older versions acknowledged and stored such a second copy, then never indexed it; the SCP now refuses it).

Every change is counted in the returned `ReconcileReport` and summarised in an event (no patient data).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from sqlalchemy import Engine, select

from sarcoscreen.db.events import EventKind, record_event
from sarcoscreen.db.models import EventLevel, Instance, InstanceState, Series
from sarcoscreen.db.session import write_session
from sarcoscreen.inference.error_text import error_text
from sarcoscreen.node.instance_index import index_instance
from sarcoscreen.node.received_header import dataset_attributes
from sarcoscreen.node.scp import ReceivedInstance, instance_from_header
from sarcoscreen.node.spool import Spool, SpoolError, file_damage

__all__ = ["ReconcileReport", "reconcile"]

logger = logging.getLogger(__name__)

_BATCH = 200
"""Files indexed per transaction (keeps the SQLite write lock short)."""


@dataclass
class ReconcileReport:
    incomplete_removed: int = 0
    indexed: int = 0
    missing: int = 0
    changed: int = 0
    restored: int = 0
    quarantined: int = 0
    conflicts: int = 0
    """Files quarantined because their SOP Instance UID is indexed, or also in the spool, under another series."""

    def summary(self) -> str:
        return (f"spool reconciled: {self.indexed} unindexed files indexed, {self.missing} rows without file, "
                f"{self.changed} changed files, {self.restored} files back, {self.quarantined} unreadable or "
                f"incomplete files quarantined, {self.incomplete_removed} incomplete writes removed, {self.conflicts} "
                "SOP Instance UIDs found under a second series quarantined")

    @property
    def changes(self) -> int:
        return self.indexed + self.missing + self.changed + self.restored + self.quarantined + self.conflicts


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _quarantine(spool: Spool, path: Path, reason: str) -> None:
    """Move a spool file that cannot be indexed to the quarantine, with the reason beside it."""
    if not spool.writable():  # it could be copied, not removed: a copy more at every start
        logger.error("spool file %s not indexed and left in place (the spool is not writable): %s", path.name, reason)
        return
    try:
        target = spool.quarantine(path.read_bytes(), reason, spool_path=str(path.relative_to(spool.root)))
        path.unlink(missing_ok=True)
    except (OSError, SpoolError) as exc:
        logger.error("cannot quarantine %s: %s", path.name, exc)
        return
    logger.warning("spool file %s quarantined as %s: %s", path.name, target.name, reason)


def _index_file(spool: Spool, series_uid: str, sop_uid: str, relative: str) -> ReceivedInstance | None:
    """The `ReceivedInstance` of an unindexed spool file, or ``None`` after quarantining it."""
    path = spool.path_of(relative)
    damage = file_damage(path)
    if damage is not None:
        _quarantine(spool, path, f"found in the spool at start-up, {damage}")
        return None
    try:
        header = dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as exc:
        _quarantine(spool, path, f"found in the spool at start-up, not readable as DICOM: {error_text(exc)}")
        return None
    meta = getattr(header, "file_meta", None)
    file_sop = str(header.get("SOPInstanceUID", "") or (meta.get("MediaStorageSOPInstanceUID", "") if meta else ""))
    file_series = str(header.get("SeriesInstanceUID", "") or "")
    if file_sop != sop_uid or file_series != series_uid:
        _quarantine(spool, path, "found in the spool at start-up under UIDs that are not its own")
        return None
    sop_class = str(header.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta else ""))
    return instance_from_header(
        dataset_attributes(header), sop_class=sop_class, sop_instance=sop_uid, relative_path=relative,
        size=path.stat().st_size, sha256=_sha256(path), calling_ae_title="", duplicate=False)


@dataclass(frozen=True)
class _Conflict:
    """A spool file whose SOP Instance UID the index holds (`where` = "indexed"), or the spool holds in a file
    received earlier (`where` = "also in the spool"), under `kept_series_uid`: the first copy is kept."""

    instance: ReceivedInstance
    kept_series_uid: str
    where: str

    @property
    def reason(self) -> str:
        return (f"found in the spool at start-up under series {self.instance.series_instance_uid}, but its SOP "
                f"Instance UID is {self.where} under series {self.kept_series_uid} (a SOP Instance UID identifies "
                "one instance, PS3.3 C.12.1.1.1; the first received is kept)")

    def event_message(self) -> str:
        return (f"instance {self.instance.sop_instance_uid}: a second copy under series "
                f"{self.instance.series_instance_uid} found in the spool at start-up went to the quarantine; this "
                "series keeps the first")


def _received_before(spool: Spool, one: ReceivedInstance, other: ReceivedInstance) -> bool:
    """Whether the spool file of `one` is older than that of `other` (modification time: written once, by the
    rename that stored it)."""
    return spool.path_of(one.relative_path).stat().st_mtime_ns < spool.path_of(other.relative_path).stat().st_mtime_ns


def reconcile(db: Engine, spool: Spool, *, verify_checksums: bool = False) -> ReconcileReport:
    """Bring the index in line with the spool; see the module docstring."""
    report = ReconcileReport(incomplete_removed=spool.discard_incomplete())
    with write_session(db) as session:
        rows = {row.spool_path: row for row in session.execute(
            select(Instance.id, Instance.spool_path, Instance.size_bytes, Instance.sha256, Instance.state,
                   Instance.series_id, Instance.sop_instance_uid, Series.series_instance_uid)
            .join(Series, Series.id == Instance.series_id)).all()}
    on_disk = {relative: (series_uid, sop_uid) for series_uid, sop_uid, relative in spool.walk()}
    indexed = {row.sop_instance_uid: row for row in rows.values()}

    pending: dict[str, ReceivedInstance] = {}
    conflicts: list[_Conflict] = []
    for relative, (series_uid, sop_uid) in sorted(on_disk.items()):
        if relative in rows:
            continue
        instance = _index_file(spool, series_uid, sop_uid, relative)
        if instance is None:
            report.quarantined += 1
            continue
        known = indexed.get(sop_uid)
        first = pending.get(sop_uid)
        if known is not None:  # under another series: the same one would be the same path
            conflicts.append(_Conflict(instance, known.series_instance_uid, "indexed"))
        elif first is None:
            pending[sop_uid] = instance
        elif _received_before(spool, instance, first):
            conflicts.append(_Conflict(first, series_uid, "also in the spool"))
            pending[sop_uid] = instance
        else:
            conflicts.append(_Conflict(instance, first.series_instance_uid, "also in the spool"))
    for conflict in conflicts:
        _quarantine(spool, spool.path_of(conflict.instance.relative_path), conflict.reason)
    report.conflicts = len(conflicts)
    series_of: dict[str, int] = {uid: row.series_id for uid, row in indexed.items()}
    ordered = list(pending.values())
    for start in range(0, len(ordered), _BATCH):
        with write_session(db) as session:
            for instance in ordered[start:start + _BATCH]:
                new, (_, series_id) = index_instance(session, instance)
                report.indexed += new
                series_of[instance.sop_instance_uid] = series_id

    updates: dict[int, tuple[InstanceState, int]] = {}
    for relative, row in rows.items():
        path = spool.path_of(relative)
        if row.state is InstanceState.PURGED and relative not in on_disk:
            continue  # deleted on purpose at the end of its retention period
        if relative not in on_disk or not path.is_file():
            if row.state is not InstanceState.MISSING_FILE:
                updates[row.id] = (InstanceState.MISSING_FILE, row.series_id)
                report.missing += 1
            continue
        changed = path.stat().st_size != row.size_bytes or (verify_checksums and _sha256(path) != row.sha256)
        if changed and row.state is not InstanceState.CHANGED_FILE:
            updates[row.id] = (InstanceState.CHANGED_FILE, row.series_id)
            report.changed += 1
        elif not changed and row.state is not InstanceState.STORED:
            updates[row.id] = (InstanceState.STORED, row.series_id)
            report.restored += 1
    if updates or report.changes:
        with write_session(db) as session:
            for instance_id, (state, _) in updates.items():
                session.get_one(Instance, instance_id).state = state
            per_series: dict[int, dict[InstanceState, int]] = {}
            for state, series_id in updates.values():
                per_series.setdefault(series_id, {}).setdefault(state, 0)
                per_series[series_id][state] += 1
            for series_id, counts in per_series.items():
                text = ", ".join(f"{n} instances now '{state.value}'" for state, n in counts.items())
                bad = any(s is not InstanceState.STORED for s in counts)
                record_event(session, EventKind.SPOOL_RECONCILED, f"start-up reconciliation: {text}",
                             level=EventLevel.WARNING if bad else EventLevel.INFO, series_id=series_id)
            for conflict in conflicts:
                record_event(session, EventKind.INSTANCE_CONFLICT, conflict.event_message(), level=EventLevel.WARNING,
                             series_id=series_of.get(conflict.instance.sop_instance_uid))
            record_event(session, EventKind.SPOOL_RECONCILED, report.summary(),
                         level=EventLevel.WARNING if report.missing or report.changed or report.quarantined
                         or report.conflicts else EventLevel.INFO)
    logger.info(report.summary())
    return report
