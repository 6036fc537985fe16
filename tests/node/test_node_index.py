"""The SCP's SQL index, the start-up reconciliation and the series watcher, on SQLite and PostgreSQL.

Instances arrive through the real SCP from dcmtk storescu where the network matters (indexing, duplicates,
late instances); the watcher's decisions are checked on index rows written by the node's own index function.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pydicom
import pytest
from ct_series_factory import edit_file, write_ct_series
from dcmtk import requires_dcmtk, storescu
from dicom_peers import free_port
from node_support import add_series, jobs_of, rows
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from sarcoscreen.db.models import Event, Instance, InstanceState, JobStatus, Series, SeriesState, Study
from sarcoscreen.db.queue import claim, complete
from sarcoscreen.db.session import write_session
from sarcoscreen.node.instance_index import SqlInstanceIndex, open_index_db
from sarcoscreen.node.reconcile import reconcile
from sarcoscreen.node.routing import RoutingRules
from sarcoscreen.node.scp import STATUS_SOP_INSTANCE_CONFLICT, StorageSCP
from sarcoscreen.node.series_watcher import decide_stable_series
from sarcoscreen.node.spool import Spool
from sarcoscreen.node.storage_scu import parse_destination, send_files

needs_dcmtk = requires_dcmtk("storescu")


def _series(engine: Engine, uid: str) -> Series:
    with Session(engine) as session:
        return session.execute(select(Series).where(Series.series_instance_uid == uid)).scalar_one()


def _decide(engine: Engine, rerun: bool = True, rules: RoutingRules | None = None) -> list[tuple[str, str, str]]:
    outcomes = decide_stable_series(engine, stable_age_s=0, rules=rules or RoutingRules(min_slices=3),
                                    rerun_on_late_instances=rerun, max_attempts=3)
    return [(o.series_instance_uid, o.outcome, o.detail) for o in outcomes]


@needs_dcmtk
def test_storescu_to_the_scp_indexes_once_and_reopens_a_decided_series(db_url: str, engine: Engine,
                                                                       tmp_path: Path) -> None:
    series = write_ct_series(tmp_path / "ct", 6, Modality="CT", PatientID="P-77", PatientSex="M",
                             PatientSize="1.81", StudyDate="20260105", AccessionNumber="A-1", BodyPartExamined="HIP")
    spool = Spool(tmp_path / "spool", tmp_path / "quarantine")
    index_db = open_index_db(db_url)
    scp = StorageSCP(spool, SqlInstanceIndex(index_db), ae_title="SARCO", host="127.0.0.1", port=free_port())
    scp.start()
    try:
        assert storescu(scp.port, series.files[:4]).statuses == [0x0000] * 4
        # A PACS resending: success, stored and indexed once.
        assert storescu(scp.port, series.files[:4]).statuses == [0x0000] * 4
        stored = _series(engine, series.series_instance_uid)
        assert (stored.instance_count, stored.state, stored.modality) == (4, SeriesState.RECEIVING, "CT")
        with Session(engine) as session:
            study = session.execute(select(Study)).scalar_one()
            assert (study.patient_id, study.patient_sex, study.patient_size_recorded) == ("P-77", "M", 1.81)
            instances = session.execute(select(Instance)).scalars().all()
        assert len(instances) == 4
        assert all((spool.root / i.spool_path).is_file() and i.calling_ae_title == "SCANNER" for i in instances)
        # The series is decided and processed; then two instances arrive late.
        assert [o[1] for o in _decide(engine)] == ["queued"]
        claimed = claim(engine, lease_s=60)
        assert claimed is not None
        with write_session(engine) as session:
            complete(session, claimed.id, claimed.lease_token)
        assert _series(engine, series.series_instance_uid).state is SeriesState.PROCESSED
        assert storescu(scp.port, series.files[4:]).statuses == [0x0000] * 2
    finally:
        scp.stop()
        index_db.dispose()
    reopened = _series(engine, series.series_instance_uid)
    assert (reopened.instance_count, reopened.state) == (6, SeriesState.RECEIVING)
    events = rows(engine, select(Event.message).where(Event.kind == "series.receiving"))
    assert len(events) == 1  # one event for the state change, not one per late instance
    assert "arrived after the series was processed" in events[0]
    # Once idle again it is re-run: a new job, the old one stays done.
    ((_, outcome, detail),) = _decide(engine)
    assert outcome == "queued"
    assert "re-run after job" in detail
    assert [j.status for j in jobs_of(engine)] == [JobStatus.DONE, JobStatus.QUEUED]


def test_routing_skips_with_reasons_and_respects_rerun_off(engine: Engine) -> None:
    add_series(engine, "1.2.9.1", 2)  # too few slices
    add_series(engine, "1.2.9.2", 5, modality="MR")
    add_series(engine, "1.2.9.3", 5, series_description="Dose Report")
    add_series(engine, "1.2.9.4", 5, body_part="CHEST", slice_thickness_mm=8.0)
    add_series(engine, "1.2.9.5", 5, axial=False)
    add_series(engine, "1.2.9.6", 5)
    decided = {uid: (outcome, detail) for uid, outcome, detail in _decide(engine, rerun=False)}
    assert decided["1.2.9.1"] == ("skipped", "2 slices, fewer than the 3 required")
    assert decided["1.2.9.2"] == ("skipped", "modality MR is not CT")
    assert decided["1.2.9.3"] == ("skipped", "description 'Dose Report' is excluded (*DOSE*)")
    assert decided["1.2.9.4"][1] == "slice thickness 8 mm exceeds 5 mm; body part CHEST is excluded (*CHEST*)"
    assert decided["1.2.9.5"] == ("skipped", "not axial")
    assert decided["1.2.9.6"][0] == "queued"
    for uid in ("1.2.9.1", "1.2.9.4"):
        stored = _series(engine, uid)
        assert stored.state is SeriesState.SKIPPED
        assert stored.skip_reason == decided[uid][1]
    skipped_events = rows(engine, select(Event.message).where(Event.kind == "series.skipped"))
    assert len(skipped_events) == 5
    # A late instance for a queued (not yet started) job: the job is kept, it will load every instance.
    add_series(engine, "1.2.9.6", 1, start=6)
    assert _decide(engine, rerun=False) == [("1.2.9.6", "kept", f"job {jobs_of(engine)[0].id} not started yet")]
    # The job runs; late instances with re-runs off: no new job, the series goes back to its job's state.
    claimed = claim(engine, lease_s=60)
    assert claimed is not None
    with write_session(engine) as session:
        complete(session, claimed.id, claimed.lease_token)
    add_series(engine, "1.2.9.6", 1, start=7)
    assert [o[1] for o in _decide(engine, rerun=False)] == ["not re-run"]
    assert _series(engine, "1.2.9.6").state is SeriesState.PROCESSED
    assert len(jobs_of(engine)) == 1
    # A skipped series that receives enough slices later is decided anew, and analysed.
    add_series(engine, "1.2.9.1", 3, start=3)
    assert [o[1] for o in _decide(engine, rerun=False)] == ["queued"]


def test_reconciliation_indexes_files_marks_missing_and_quarantines_junk(engine: Engine, tmp_path: Path) -> None:
    series = write_ct_series(tmp_path / "ct", 3, Modality="CT")
    spool = Spool(tmp_path / "spool", tmp_path / "quarantine")
    stored = [spool.store(path.read_bytes(), series.series_instance_uid, uid)
              for path, uid in zip(series.files, series.sop_instance_uids, strict=True)]
    # A crash left a partial write; a foreign file sits in a series folder; one more file is not indexed.
    (spool.root / ".incoming" / "abc.part").write_bytes(b"partial")
    junk = spool.root / series.series_instance_uid / "1.2.3.dcm"
    junk.write_bytes(b"not DICOM")
    report = reconcile(engine, spool)
    assert (report.indexed, report.quarantined, report.incomplete_removed) == (3, 1, 1)
    assert not junk.exists()
    notes = list((tmp_path / "quarantine").rglob("*.json"))
    assert len(notes) == 1
    assert "not readable as DICOM" in notes[0].read_text(encoding="utf-8")
    assert _series(engine, series.series_instance_uid).instance_count == 3
    # Nothing to do the second time.
    assert reconcile(engine, spool).changes == 0
    # A file disappears, another is changed: the rows say so; the file coming back restores its row.
    stored[0].path.rename(tmp_path / "away.dcm")
    with stored[1].path.open("ab") as handle:
        handle.write(b"\0\0")
    report = reconcile(engine, spool)
    assert (report.missing, report.changed) == (1, 1)
    states = {i.sop_instance_uid: i.state for i in rows(engine, select(Instance))}
    assert states[series.sop_instance_uids[0]] is InstanceState.MISSING_FILE
    assert states[series.sop_instance_uids[1]] is InstanceState.CHANGED_FILE
    (tmp_path / "away.dcm").rename(stored[0].path)
    assert reconcile(engine, spool).restored == 1
    # A file whose UIDs do not match its place in the spool is quarantined, not indexed under a wrong name.
    wrong = spool.root / series.series_instance_uid / "1.2.840.99.1.dcm"
    wrong.write_bytes(series.files[2].read_bytes())
    assert reconcile(engine, spool).quarantined == 1
    assert pydicom.dcmread(stored[2].path).SOPInstanceUID == series.sop_instance_uids[2]


def test_results_and_jobs_for_qa(engine: Engine) -> None:
    """`sarcoscreen results` / `jobs` queries and formats on real rows: filters by state, flag, patient and time."""
    from datetime import UTC, datetime, timedelta

    from sarcoscreen.db.models import Classification, Completeness, GroupResult, GroupSide, HeightSource
    from sarcoscreen.db.queries import jobs, results
    from sarcoscreen.node.commands.jobs import format_jobs
    from sarcoscreen.node.commands.results import parse_since
    from sarcoscreen.node.results_view import format_results

    add_series(engine, "1.2.8.1", 5, patient_id="P-A")
    add_series(engine, "1.2.8.2", 2, patient_id="P-B", study_uid="1.2.826.0.1.2")
    _decide(engine)  # 1.2.8.1 queued, 1.2.8.2 skipped (too few slices)
    claimed = claim(engine, lease_s=60)
    assert claimed is not None
    with write_session(engine) as session:
        for group, classification in (("gluteal", Classification.SUSPECTED), ("above_knee", None), ("all", None)):
            session.add(GroupResult(
                job_id=claimed.id, muscle_group=group, side=GroupSide.BOTH, completeness=Completeness.COMPLETE,
                reason="complete", smm_g=1500.0, smi_kg_m2=0.6, screening_side_rule="mean", screening_smi_kg_m2=0.3,
                classification=classification or Classification.NOT_SUSPECTED, classification_reason="test",
                cutoff_kg_m2=0.35, height_m=1.6, height_source=HeightSource.DICOM))
        complete(session, claimed.id, claimed.lease_token)
    with Session(engine) as session:
        everything = results(session)
        flagged = results(session, flagged=True)
        skipped = results(session, state="skipped")
        patient = results(session, patient_id="P-B")
        future = results(session, since=datetime.now(UTC) + timedelta(hours=1))
        recent = results(session, since=parse_since("1h"))
        listed = jobs(session)
    assert {r.series_instance_uid for r in everything} == {"1.2.8.1", "1.2.8.2"}
    assert [r.series_instance_uid for r in flagged] == ["1.2.8.1"]
    assert flagged[0].groups["gluteal"].screening_smi_kg_m2 == 0.3
    assert [(r.series_instance_uid, r.skip_reason) for r in skipped] == [("1.2.8.2",
                                                                           "2 slices, fewer than the 3 required")]
    assert [r.patient_id for r in patient] == ["P-B"]
    assert future == []
    assert len(recent) == 2
    table = format_results(everything, "table")
    assert "yes" in table  # flagged
    assert "2 slices, fewer than the 3 required" in table
    assert format_results(everything, "csv").splitlines()[0].startswith("series_instance_uid,patient_id")
    assert {r["state"] for r in json.loads(format_results(everything, "json"))} == {"processed", "skipped"}
    assert [(j.status, j.attempts) for j in listed] == [("done", 1)]
    assert f"job {listed[0].id}  done" in format_jobs(listed)
    with pytest.raises(ValueError, match="expected a date"):
        parse_since("yesterday")
    assert parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)


def _under_series(source: Path, target: Path, series_uid: str) -> Path:
    """A copy of `source` with another Series Instance UID and the same SOP Instance UID."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    edit_file(target, lambda ds: setattr(ds, "SeriesInstanceUID", series_uid))
    return target


@needs_dcmtk
def test_the_same_sop_instance_uid_under_another_series_is_refused_and_recorded(engine: Engine, db_url: str,
                                                                                 tmp_path: Path) -> None:
    """A SOP Instance UID identifies one instance (PS3.3 C.12.1.1.1): received again under another series it is
    refused (0xC001, in PS3.4's "Cannot understand" range), its bytes quarantined and an event names both
    series. The first copy stays as it was; the second series' other instances are stored."""
    first = write_ct_series(tmp_path / "a", 2, rows=4, columns=4, Modality="CT")
    second = write_ct_series(tmp_path / "b", 1, rows=4, columns=4, Modality="CT")
    copy = _under_series(first.files[0], tmp_path / "b2" / "copy.dcm", second.series_instance_uid)
    spool = Spool(tmp_path / "spool", tmp_path / "quarantine")
    index_db = open_index_db(db_url)
    scp = StorageSCP(spool, SqlInstanceIndex(index_db), ae_title="SARCO", host="127.0.0.1", port=free_port())
    scp.start()
    try:
        destination = parse_destination(f"SARCO@127.0.0.1:{scp.port}", "SCANNER")
        assert send_files(first.files, destination).sent == 2
        result = send_files([second.files[0], copy], destination)
        # A PACS resending the conflicting instance hears the same answer.
        again = send_files([copy], destination)
    finally:
        scp.stop()
        index_db.dispose()
    assert [o.status for o in result.outcomes] == [0x0000, STATUS_SOP_INSTANCE_CONFLICT]
    assert [o.status for o in again.outcomes] == [STATUS_SOP_INSTANCE_CONFLICT]
    sop = first.sop_instance_uids[0]
    assert {relative for _, _, relative in spool.walk()} == {
        f"{first.series_instance_uid}/{sop}.dcm", f"{first.series_instance_uid}/{first.sop_instance_uids[1]}.dcm",
        f"{second.series_instance_uid}/{second.sop_instance_uids[0]}.dcm"}
    (kept,) = rows(engine, select(Instance).where(Instance.sop_instance_uid == sop))
    assert kept.spool_path == f"{first.series_instance_uid}/{sop}.dcm"
    assert _series(engine, second.series_instance_uid).instance_count == 1
    notes = sorted((tmp_path / "quarantine").rglob("*.json"))
    assert len(notes) == 2
    note = json.loads(notes[0].read_text(encoding="utf-8"))
    assert f"already stored under series {first.series_instance_uid}" in note["reason"]
    assert note["sop_instance_uid"] == sop
    events = rows(engine, select(Event).where(Event.kind == "instance.conflict"))
    assert len(events) == 2
    assert events[0].series_id == _series(engine, first.series_instance_uid).id
    assert sop in events[0].message
    assert second.series_instance_uid in events[0].message
    assert "CRAFTED" not in events[0].message  # the patient ID of the factory's data sets


def test_reconciliation_quarantines_a_sop_instance_uid_found_under_a_second_series(engine: Engine,
                                                                                   tmp_path: Path) -> None:
    """A spool from an older version may hold one SOP Instance UID under two series folders (it acknowledged
    both). The first received stays - the one indexed, or of two unindexed the older file - and the other goes to
    the quarantine with the reason and an event; nothing is lost, and the next start has nothing to do."""
    one = write_ct_series(tmp_path / "one", 2, rows=4, columns=4, Modality="CT")
    two = write_ct_series(tmp_path / "two", 1, rows=4, columns=4, Modality="CT")
    spool = Spool(tmp_path / "spool", tmp_path / "quarantine")
    for path, uid in zip(one.files, one.sop_instance_uids, strict=True):
        spool.store(path.read_bytes(), one.series_instance_uid, uid)
    assert reconcile(engine, spool).indexed == 2
    # The older version's second copies: one of an indexed instance, and a pair neither of which is indexed.
    sop = one.sop_instance_uids[0]
    late = spool.store(_under_series(one.files[0], tmp_path / "x" / "late.dcm", "1.2.826.0.1.99.1").read_bytes(),
                       "1.2.826.0.1.99.1", sop)
    earlier = spool.store(two.files[0].read_bytes(), two.series_instance_uid, two.sop_instance_uids[0])
    later = spool.store(_under_series(two.files[0], tmp_path / "x" / "later.dcm", "1.2.826.0.1.99.2").read_bytes(),
                        "1.2.826.0.1.99.2", two.sop_instance_uids[0])
    os.utime(earlier.path, ns=(later.path.stat().st_mtime_ns - 10**9,) * 2)
    report = reconcile(engine, spool)
    assert (report.conflicts, report.indexed, report.quarantined) == (2, 1, 0)
    assert not late.path.exists()
    assert not later.path.exists()
    assert earlier.path.exists()
    (kept,) = rows(engine, select(Instance).where(Instance.sop_instance_uid == two.sop_instance_uids[0]))
    assert kept.spool_path == earlier.relative_path
    reasons = sorted(json.loads(n.read_text(encoding="utf-8"))["reason"]
                     for n in (tmp_path / "quarantine").rglob("*.json"))
    assert len(reasons) == 2
    assert any(f"indexed under series {one.series_instance_uid}" in r for r in reasons)
    assert any(f"also in the spool under series {two.series_instance_uid}" in r for r in reasons)
    events = rows(engine, select(Event).where(Event.kind == "instance.conflict"))
    assert len(events) == 2
    assert all(e.series_id is not None for e in events)
    assert "2 SOP Instance UIDs found under a second series quarantined" in report.summary()
    assert reconcile(engine, spool).changes == 0
