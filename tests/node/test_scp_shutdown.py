"""Stopping the SCP while an association is open: the association is aborted, a C-STORE being stored finishes,
nothing acknowledged is lost and nothing half-written stays behind.

One test stops the SCP in this process; the other sends SIGTERM to a real ``sarcoscreen serve`` while dcmtk
storescu is in the middle of sending, and then checks the spool and the database the node left.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from pathlib import Path

import pydicom
import pytest
from ct_series_factory import write_ct_series
from dcmtk import dcmtk_tool, parse_scu_output, requires_dcmtk
from dicom_peers import free_port
from node_support import NodeConfig, node_process, rows, wait_for
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from sqlalchemy import select
from test_scp import RecordingIndex

from sarcoscreen.db import migrate
from sarcoscreen.db.models import Instance, InstanceState
from sarcoscreen.db.session import create_engine_from_url
from sarcoscreen.node.reconcile import reconcile
from sarcoscreen.node.scp import StorageSCP
from sarcoscreen.node.spool import Spool


def _requestor() -> AE:
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    return ae


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> pydicom.Dataset:
    """One small CT data set; each C-STORE sends it under a new SOP Instance UID."""
    series = write_ct_series(tmp_path_factory.mktemp("ct"), 1, rows=8, columns=8, Modality="CT")
    return pydicom.dcmread(series.files[0])


def _store(assoc: object, ds: pydicom.Dataset) -> tuple[str, int | None]:
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    response = assoc.send_c_store(ds)  # type: ignore[attr-defined]
    return ds.SOPInstanceUID, (int(response.Status) if "Status" in response else None)


def test_stop_aborts_the_associations_that_are_open(tmp_path: Path, instance: pydicom.Dataset) -> None:
    """After `stop` returns no association of the SCP goes on: the peer is told (A-ABORT) and sends again later;
    an association left running would store and acknowledge instances after the node said it had stopped."""
    spool = Spool(tmp_path / "spool", tmp_path / "quarantine")
    index = RecordingIndex()
    scp = StorageSCP(spool, index, ae_title="SARCO", host="127.0.0.1", port=free_port())
    scp.start()
    assoc = _requestor().associate("127.0.0.1", scp.port, ae_title="SARCO")
    try:
        assert assoc.is_established
        assert _store(assoc, instance)[1] == 0x0000
        scp.stop()
        wait_for("the peer to be told the association is aborted", lambda: assoc.is_aborted, timeout=10)
    finally:
        if assoc.is_established:
            assoc.abort()
        scp.stop()
    assert len(index.instances) == 1
    assert len(list(spool.walk())) == 1


@pytest.mark.slow  # a real node process (2-5 s); the one test of what SIGTERM does to a transfer in progress
@requires_dcmtk("storescu")
def test_sigterm_mid_transfer_loses_nothing_acknowledged_and_leaves_nothing_half_done(tmp_path: Path) -> None:
    """dcmtk storescu sends one file 2000 times under new UIDs; SIGTERM once 20 are in the spool. The node
    aborts the association and exits; every instance storescu heard Success for is indexed, its file complete,
    and nothing else is in the spool or in ``.incoming``."""
    source = write_ct_series(tmp_path / "ct", 1, rows=8, columns=8, Modality="CT").files[0]
    url = f"sqlite:///{tmp_path / 'node.db'}"
    migrate.upgrade(url)
    config = NodeConfig(tmp_path / "node", url)
    spool = Spool(config.folder / "data" / "spool", config.folder / "data" / "quarantine")
    log = tmp_path / "storescu.log"
    with node_process(config, "serve") as node, log.open("w") as sender_log:
        sender = subprocess.Popen(
            [dcmtk_tool("storescu"), "-d", "--repeat", "2000", "+II", "-aet", "SCANNER", "-aec", "SARCO",
             "127.0.0.1", str(config.port), str(source)], stdout=sender_log, stderr=subprocess.STDOUT,
            env={**os.environ, "TCP_NODELAY": "1"})
        wait_for("20 instances in the spool", lambda: sum(1 for _ in spool.walk()) >= 20, interval=0.02)
        node.process.send_signal(signal.SIGTERM)
        returncode = sender.wait(timeout=120)
        assert node.process.wait(timeout=60) == 0, node.text()
    sent = parse_scu_output(log.read_text(encoding="utf-8", errors="replace"), returncode)
    assert sent.association == "accepted", sent
    acknowledged = {r.sop_instance_uid for r in sent.responses if r.status == 0x0000}
    assert 20 <= len(acknowledged) < 2000, "the node stopped only after the peer had sent everything"
    assert "aborted: the node is stopping" in node.text()
    assert list((spool.root / ".incoming").iterdir()) == []  # no half-written file
    engine = create_engine_from_url(url)
    try:
        indexed = {i.sop_instance_uid: i for i in rows(engine, select(Instance))}
        assert acknowledged <= set(indexed)  # nothing acknowledged is lost
        for row in indexed.values():  # and what is indexed is complete: the file the row describes
            assert row.state is InstanceState.STORED
            assert hashlib.sha256(spool.path_of(row.spool_path).read_bytes()).hexdigest() == row.sha256
        assert reconcile(engine, spool).changes == 0  # every spool file is indexed: nothing for the next start
    finally:
        engine.dispose()
