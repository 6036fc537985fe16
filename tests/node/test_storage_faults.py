"""Storage faults on real file systems (tests/filesystems.py: a small tmpfs, filled or remounted read-only): a
read-only spool, damaged files left in the spool at start-up, and a full disk under the outputs and under the
database. The node refuses what it cannot keep (0xA700, logged), never acknowledges what it did not keep, never
loses what it acknowledged, and never crashes at start-up."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pydicom
import pytest
from ct_series_factory import write_ct_series
from dcmtk import requires_dcmtk, storescu
from dicom_output_fixtures import Crafted, crafted_analysis
from dicom_peers import free_port
from filesystems import fill, read_only, small_filesystem
from node_support import rows
from sqlalchemy import Engine, select

from sarcoscreen.db import migrate
from sarcoscreen.db.models import Event, EventLevel, Instance, InstanceState
from sarcoscreen.inference.file_modes import FileWriteError
from sarcoscreen.node.config import Settings
from sarcoscreen.node.instance_index import SqlInstanceIndex, open_index_db
from sarcoscreen.node.reconcile import reconcile
from sarcoscreen.node.scp import StorageSCP
from sarcoscreen.node.service import NodeService
from sarcoscreen.node.spool import Spool
from sarcoscreen.reports.dicom_outputs import write_dicom_outputs
from sarcoscreen.reports.result_files import write_result_files

needs_dcmtk = requires_dcmtk("storescu")

PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
"""(7FE0,0010) Pixel Data, little endian (PS3.5 7.1)."""


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Crafted:
    return crafted_analysis(tmp_path_factory.mktemp("faults") / "ct")


def _node_settings(tmp_path: Path, data: Path) -> Settings:
    return Settings.model_validate({
        "network": {"ae_title": "SARCO", "host": "127.0.0.1", "port": free_port(), "stable_age_s": 3600},
        "database": {"url": f"sqlite:///{tmp_path / 'db' / 'sarcoscreen.db'}"},
        "storage": {"data_dir": str(data), "min_free_mb": 0, "retention_days": 0, "outputs_retention_days": 0},
    })


@needs_dcmtk
def test_a_read_only_spool_refuses_new_instances_and_loses_nothing(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    series = write_ct_series(tmp_path / "ct", 2, rows=16, columns=16)
    with small_filesystem(tmp_path / "data", 1024) as data:
        settings = _node_settings(tmp_path, data)
        service = NodeService(settings)
        service.start()
        try:
            first = storescu(service.port, series.files[:1])
        finally:
            service.stop()
        assert first.statuses == [0x0000], first.problems
        # A crash mid-write left a partial file; then the kernel remounted the disk read-only.
        (data / "spool" / ".incoming" / "dead.part").write_bytes(b"half")
        read_only(data)
        service = NodeService(settings)
        with caplog.at_level(logging.WARNING, logger="sarcoscreen"):
            service.start()  # starts: the outputs can still be sent, and the SCP answers with a reason
            try:
                again = storescu(service.port, series.files)
            finally:
                service.stop()
        # The first instance was kept, so its resend is Success; the new one is refused, not acknowledged.
        assert [(r.sop_instance_uid, r.status) for r in again.responses] == [
            (series.sop_instance_uids[0], 0x0000), (series.sop_instance_uids[1], 0xA700)], again.problems
        kept = data / "spool" / series.series_instance_uid / f"{series.sop_instance_uids[0]}.dcm"
        assert pydicom.dcmread(kept).SOPInstanceUID == series.sop_instance_uids[0]
        assert sorted(p.name for p in (data / "spool").rglob("*.dcm")) == [kept.name]
        engine = open_index_db(settings.database_url)
        try:
            indexed = rows(engine, select(Instance.state))
        finally:
            engine.dispose()
        assert indexed == [InstanceState.STORED]
    text = caplog.text
    assert f"the spool {data / 'spool'} is not writable" in text
    assert "every C-STORE will be refused with 0xA700" in text
    assert f"C-STORE of {series.sop_instance_uids[1]}" in text
    assert "read-only file system" in text


def _damaged_spool(tmp_path: Path) -> tuple[Spool, list[str], dict[str, str]]:
    """A spool with one whole file and the damaged files a crash, a full disk or a bad copy leave."""
    series = write_ct_series(tmp_path / "ct", 5, rows=16, columns=16)
    spool = Spool(tmp_path / "spool", tmp_path / "quarantine")
    folder = spool.root / series.series_instance_uid
    folder.mkdir()
    whole, empty, cut_in_pixels, cut_before_pixels, cut_in_header = (
        (folder / f"{uid}.dcm", uid) for uid in series.sop_instance_uids)
    data = [path.read_bytes() for path in series.files]
    whole[0].write_bytes(data[0])
    empty[0].write_bytes(b"")
    cut_in_pixels[0].write_bytes(data[2][:-100])
    cut_before_pixels[0].write_bytes(data[3][:data[3].index(PIXEL_DATA_TAG)])
    cut_in_header[0].write_bytes(data[4][:400])
    (folder / "1.2.3.4.dcm").mkdir()  # not a file at all: ignored
    expected = {empty[1]: "empty (0 bytes)", cut_in_pixels[1]: "truncated", cut_before_pixels[1]: "truncated",
                cut_in_header[1]: "truncated"}
    return spool, [whole[1]], expected


def test_damaged_files_left_in_the_spool_are_quarantined_never_indexed(engine: Engine, tmp_path: Path) -> None:
    spool, whole, damaged = _damaged_spool(tmp_path)
    report = reconcile(engine, spool)
    assert (report.indexed, report.quarantined) == (1, 4)
    assert rows(engine, select(Instance.sop_instance_uid)) == whole
    assert sorted(stem for _, stem, _ in spool.walk()) == whole
    reasons = {}
    for note in (tmp_path / "quarantine").rglob("*.json"):
        facts = json.loads(note.read_text(encoding="utf-8"))
        reasons[Path(facts["spool_path"]).stem] = facts["reason"]
    assert reasons.keys() == damaged.keys()
    for uid, reason in damaged.items():
        assert reason in reasons[uid], reasons[uid]
    (event,) = rows(engine, select(Event).where(Event.kind == "spool.reconciled"))
    assert event.level is EventLevel.WARNING
    assert "4 unreadable or incomplete files quarantined" in event.message


def _write_outputs(crafted: Crafted, folder: Path) -> int:
    """What the worker writes for one job: the result files, then the DICOM outputs; how many files."""
    written = write_result_files(folder, crafted.volume, crafted.segmentation, crafted.report, None)
    outputs = write_dicom_outputs(crafted.folder, crafted.volume, crafted.segmentation, crafted.report, folder,
                                  settings_digest="full", picture=written.picture)
    return len(written.files) + len(outputs.files)


def test_a_full_disk_while_writing_outputs_leaves_only_whole_files(crafted: Crafted, tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "outputs", 4096) as outputs:
        folder = outputs / "job-1"
        # Room for nothing, for the measurement files only, for all but the SR and the key image.
        for room in (0, 20_000, 80_000):
            ballast = fill(outputs, room)
            with pytest.raises(FileWriteError, match="No space left on device"):
                _write_outputs(crafted, folder)
            left = sorted(p.name for p in folder.iterdir())
            assert [name for name in left if name.startswith(".")] == [], left
            for name in left:
                path = folder / name
                if name.endswith(".dcm"):
                    pydicom.dcmread(path)  # whole: reads
                elif name.endswith(".json"):
                    json.loads(path.read_text(encoding="utf-8"))
            ballast.unlink()
        # With room again the same calls write everything (the worker's next attempt).
        assert _write_outputs(crafted, folder) == 6


@needs_dcmtk
def test_a_full_disk_under_the_database_refuses_and_keeps_the_instance(tmp_path: Path) -> None:
    series = write_ct_series(tmp_path / "ct", 2, rows=16, columns=16)
    spool = Spool(tmp_path / "spool", tmp_path / "quarantine")
    with small_filesystem(tmp_path / "db", 2048) as folder:
        url = f"sqlite:///{folder / 'sarcoscreen.db'}"
        migrate.upgrade(url)
        engine = open_index_db(url)
        scp = StorageSCP(spool, SqlInstanceIndex(engine), ae_title="SARCO", host="127.0.0.1", port=free_port())
        scp.start()
        try:
            assert storescu(scp.port, series.files[:1]).statuses == [0x0000]
            ballast = fill(folder)
            assert storescu(scp.port, series.files[1:]).statuses == [0xA700]  # Refused: Out of Resources
        finally:
            scp.stop()
        # Not acknowledged, yet durable in the spool: with room again the start-up reconciliation indexes it.
        assert len(list(spool.walk())) == 2
        ballast.unlink()
        assert reconcile(engine, spool).indexed == 1
        assert sorted(rows(engine, select(Instance.sop_instance_uid))) == sorted(series.sop_instance_uids)
        engine.dispose()
