"""The node end to end with real peers on loopback, on SQLite and PostgreSQL.

Every test starts ``sarcoscreen --config FILE run|serve|worker`` as subprocesses, sends with dcmtk
``storescu``/``echoscu`` (or ``sarcoscreen send``) and checks what arrives at real destinations - dcmtk
``storescp`` and Orthanc - and what the database says. Waiting is for states, with deadlines; nothing asserts
on timing. Phantoms are small (128 x 128, 5 mm slices) so that each test takes seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from certificates import make_pki
from ct_series_factory import write_ct_series
from dcmtk import CALLING_AE_TITLE_NOT_RECOGNIZED, dcmtk_tool, echoscu, requires_dcmtk, storescu
from dicom_peers import dcmtk_storescp, free_port, wait_for_port
from node_support import SARCOSCREEN, NodeConfig, deliveries_of, jobs_of, node_process, rows, wait_for
from orthanc_peer import orthanc
from pydicom.uid import JPEGLSLossless
from sqlalchemy import Engine, select

from sarcoscreen.db.models import DeliveryStatus, Event, Instance, JobStatus, OutputKind, Series, SeriesState
from sarcoscreen.inference.phantom import PhantomParameters, make_phantom
from sarcoscreen.inference.phantom.parameters import Fov

pytestmark = [
    requires_dcmtk("storescu", "echoscu", "storescp"),
    pytest.mark.slow,
]

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


@dataclass(frozen=True)
class SentSeries:
    folder: Path
    uid: str

    @property
    def files(self) -> list[Path]:
        return sorted(self.folder.glob("*.dcm"))


def _phantom(folder: Path, seed: int, fov: Fov = Fov.HIP) -> SentSeries:
    result = make_phantom(PhantomParameters(matrix=128, slice_mm=5.0, seed=seed, fov=fov), folder)
    uid = str(pydicom.dcmread(next(result.dicom_dir.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID)
    return SentSeries(result.dicom_dir, uid)


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SentSeries]:
    """The test series, made once: hip phantoms, a JPEG-LS compressed hip, legs only, and a 5-slice series."""
    root = tmp_path_factory.mktemp("series")
    made = {"hip": _phantom(root / "hip", 11), "hip2": _phantom(root / "hip2", 12),
            "legs": _phantom(root / "legs", 14, Fov.LEGS)}
    source = _phantom(root / "jpegls-source", 13)
    compressed = root / "jpegls"
    compressed.mkdir()
    for path in source.files:
        ds = pydicom.dcmread(path)
        ds.compress(JPEGLSLossless)
        ds.save_as(compressed / path.name, enforce_file_format=True)
    made["jpegls"] = SentSeries(compressed, source.uid)
    small = write_ct_series(root / "small", 5, Modality="CT", shuffle=False)
    made["small"] = SentSeries(small.folder, small.series_instance_uid)
    return made


def _series_state(engine: Engine, uid: str) -> Series | None:
    found = rows(engine, select(Series).where(Series.series_instance_uid == uid))
    return found[0] if found else None


def _in_state(engine: Engine, uid: str, *states: SeriesState) -> Series | None:
    found = _series_state(engine, uid)
    return found if found is not None and found.state in states else None


def _all_sent(engine: Engine, expected: int) -> list[object] | None:
    deliveries = deliveries_of(engine)
    if len(deliveries) == expected and all(d.status is DeliveryStatus.SENT for d, _ in deliveries):
        return deliveries  # type: ignore[return-value]
    return None


def _cli(config: NodeConfig, *args: str) -> str:
    result = subprocess.run([*SARCOSCREEN, "--config", str(config.path), *args], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _received_classes(folder: Path) -> list[str]:
    return sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID) for p in folder.rglob("*")
                  if p.is_file())


def test_the_node_end_to_end(db_url: str, series: dict[str, SentSeries], tmp_path: Path) -> None:
    """storescu/echoscu/sarcoscreen send -> node -> storescp and Orthanc: a plain and a JPEG-LS hip series are
    analysed and delivered to both; legs-only and 5-slice series are skipped with reasons; a caller not on the
    allow-list is rejected; results and jobs commands report it all; no patient data in the log."""
    with dcmtk_storescp(tmp_path / "storescp") as scp, orthanc(tmp_path / "orthanc") as pacs:
        config = NodeConfig(tmp_path / "node", db_url, destinations=[
            {"name": "storescp", "ae_title": scp.ae_title, "host": "127.0.0.1", "port": scp.port},
            {"name": "orthanc", "ae_title": pacs.ae_title, "host": "127.0.0.1", "port": pacs.dicom_port},
        ], sections={"network": {"allowed_calling": ["SCANNER", "SARCOSCREEN@127.0.0.1"]}})
        with node_process(config, "run") as node:
            assert echoscu(config.port, calling="SCANNER").statuses == [0x0000]
            rejected = storescu(config.port, series["hip"].files[:1], calling="INTRUDER")
            assert (rejected.association, rejected.rejection) == ("rejected", CALLING_AE_TITLE_NOT_RECOGNIZED)
            for name, extra in (("hip", ()), ("jpegls", ("-xt",)), ("small", ())):
                sent = storescu(config.port, series[name].files, extra=extra)
                assert sent.statuses == [0x0000] * len(series[name].files), sent
            sent = subprocess.run([*SARCOSCREEN, "send", str(series["legs"].folder), "--to",
                                   f"SARCO@127.0.0.1:{config.port}"], capture_output=True, text=True, timeout=120,
                                  check=False)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            engine = config.engine()
            try:
                for name in ("hip", "jpegls"):
                    wait_for(f"{name} processed", lambda n=name: _in_state(engine, series[n].uid,
                                                                            SeriesState.PROCESSED), timeout=120)
                legs = wait_for("legs skipped", lambda: _in_state(engine, series["legs"].uid, SeriesState.SKIPPED))
                small = wait_for("small skipped", lambda: _in_state(engine, series["small"].uid,
                                                                    SeriesState.SKIPPED))
                deliveries = wait_for("12 deliveries sent", lambda: _all_sent(engine, 12), timeout=120)
                spool_syntaxes = set(rows(engine, select(Instance.transfer_syntax_uid).join(Series).where(
                    Series.series_instance_uid == series["jpegls"].uid)))
                jobs = jobs_of(engine)
            finally:
                engine.dispose()
            results = json.loads(_cli(config, "results", "--format", "json"))
            jobs_text = _cli(config, "jobs")
            processed_json = json.loads(_cli(config, "results", "--status", "processed", "--format", "json"))
            flagged = _cli(config, "results", "--flagged", "--format", "csv")
            log = node.text()
        orthanc_uids = pacs.instance_uids()
    # Routing and coverage decisions, with their reasons.
    assert small.skip_reason == "5 slices, fewer than the 20 required"
    assert legs.skip_reason == "the images do not reach the gluteal region (no gluteal muscle found)"
    assert spool_syntaxes == {JPEGLSLossless}  # stored as received, never transcoded
    assert sorted(j.status for j in jobs) == [JobStatus.DONE] * 3  # hip, jpegls, and the legs' coverage check
    # Each destination has SEG, SR and key image of both analysed series, once.
    outputs = {(o.kind, o.sop_instance_uid) for _, o in deliveries}
    assert {kind for kind, _ in outputs} == {OutputKind.SEG, OutputKind.SR, OutputKind.KEY_IMAGE}
    assert len(outputs) == 6
    classes = _received_classes(tmp_path / "storescp")
    assert classes.count(SEG_CLASS) == 2
    assert classes.count(COMPREHENSIVE_SR) == 2
    assert len(classes) == 6
    assert {uid for _, uid in outputs} <= orthanc_uids
    # What QA staff see.
    by_uid = {r["series_instance_uid"]: r for r in results}
    hip = by_uid[series["hip"].uid]
    assert hip["state"] == "processed"
    assert hip["deliveries"] == {"sent": 6, "total": 6}
    assert hip["groups"]["gluteal"]["completeness"] == "complete"
    assert hip["groups"]["gluteal"]["classification"] == "not classified"  # no calibration configured
    assert hip["patient_id"].startswith("PHANTOM-")
    assert by_uid[series["small"].uid]["skip_reason"] == "5 slices, fewer than the 20 required"
    assert {r["series_instance_uid"] for r in processed_json} == {series["hip"].uid, series["jpegls"].uid}
    assert flagged.splitlines()[1:] == []  # header only: nobody flagged without a calibration
    assert "storescp (STORESCP@127.0.0.1" in jobs_text
    assert "3 sent of 3" in jobs_text
    # The log has UIDs but no patient names or IDs.
    assert "PHANTOM" not in log
    assert "rejected: calling AE title not allowed" in log


def test_tls_both_ways(db_url: str, series: dict[str, SentSeries], tmp_path: Path) -> None:
    """dcmtk storescu --tls with a client certificate -> node (TLS, client certificate required) -> dcmtk
    storescp --tls requiring ours; plain TCP and TLS without a client certificate get no association."""
    pki = make_pki(tmp_path / "pki")
    received = tmp_path / "tls-storescp"
    received.mkdir()
    destination_port = free_port()
    destination = subprocess.Popen(
        [dcmtk_tool("storescp"), "--aetitle", "TLSSCP", "--output-directory", str(received), "+tls",
         str(pki.server_key), str(pki.server_cert), "+cf", str(pki.ca), "-rc", str(destination_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(destination_port)
        config = NodeConfig(tmp_path / "node", db_url, destinations=[{
            "name": "tls-pacs", "ae_title": "TLSSCP", "host": "127.0.0.1", "port": destination_port, "tls": True,
            "tls_ca_certificates": str(pki.ca), "tls_certificate": str(pki.client_cert),
            "tls_private_key": str(pki.client_key)}],
            sections={"network": {"tls_certificate": str(pki.server_cert), "tls_private_key": str(pki.server_key),
                                  "tls_ca_certificates": str(pki.ca), "tls_require_client_certificate": True}})
        with node_process(config, "run"):
            tls = ["+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca)]
            sent = storescu(config.port, series["hip2"].files, extra=tls)
            assert sent.statuses == [0x0000] * len(series["hip2"].files), sent
            plain = storescu(config.port, series["hip"].files[:1])
            assert (plain.association, plain.responses) == ("none", ()), plain
            anonymous = storescu(config.port, series["hip"].files[:1], extra=["+tla", "+cf", str(pki.ca)])
            assert (anonymous.association, anonymous.responses) == ("none", ()), anonymous  # no client certificate
            engine = config.engine()
            try:
                deliveries = wait_for("outputs delivered over TLS", lambda: _all_sent(engine, 3), timeout=120)
                assert _series_state(engine, series["hip"].uid) is None  # nothing of the refused ones
            finally:
                engine.dispose()
        classes = _received_classes(received)
        # `sarcoscreen send --to NAME` uses the configured destination with its TLS settings.
        seg = next(config.folder / "data" / "outputs" / o.path for _, o in deliveries if o.kind is OutputKind.SEG)
        resent = subprocess.run([*SARCOSCREEN, "--config", str(config.path), "send", str(seg), "--to", "tls-pacs"],
                                capture_output=True, text=True, timeout=120, check=False)
        assert resent.returncode == 0, resent.stdout + resent.stderr
        assert "sent 1 of 1 files to TLSSCP@127.0.0.1" in resent.stdout
        assert "(TLS)" in resent.stdout
    finally:
        destination.terminate()
        destination.wait(timeout=10)
    assert classes.count(SEG_CLASS) == 1
    assert classes.count(COMPREHENSIVE_SR) == 1


def test_a_destination_that_is_down_gets_the_outputs_once_it_is_back(db_url: str, series: dict[str, SentSeries],
                                                                     tmp_path: Path) -> None:
    port = free_port()
    config = NodeConfig(tmp_path / "node", db_url,
                        destinations=[{"name": "late", "ae_title": "STORESCP", "host": "127.0.0.1", "port": port}])
    with node_process(config, "run"):
        assert storescu(config.port, series["hip"].files).statuses == [0x0000] * len(series["hip"].files)
        engine = config.engine()
        try:
            def retried() -> bool:
                deliveries = deliveries_of(engine)
                return len(deliveries) == 3 and all(d.status is DeliveryStatus.PENDING and d.attempts >= 2
                                                    for d, _ in deliveries)

            wait_for("failed delivery attempts", retried, timeout=120)
            jobs_text = _cli(config, "jobs")
            assert "late (STORESCP@127.0.0.1" in jobs_text
            assert "3 pending of 3" in jobs_text
            assert "could not be established" in jobs_text
            # The destination comes back on its port.
            back = subprocess.Popen([dcmtk_tool("storescp"), "--aetitle", "STORESCP", "--output-directory",
                                     str(tmp_path / "received"), str(port)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            (tmp_path / "received").mkdir(exist_ok=True)
            try:
                wait_for_port(port)
                deliveries = wait_for("deliveries sent after the destination came back",
                                      lambda: _all_sent(engine, 3), timeout=120)
                assert all(d.attempts >= 2 for d, _ in deliveries)
            finally:
                back.terminate()
                back.wait(timeout=10)
        finally:
            engine.dispose()
    classes = _received_classes(tmp_path / "received")
    assert sorted(classes) == sorted([SEG_CLASS, COMPREHENSIVE_SR, "1.2.840.10008.5.1.4.1.1.7"])  # delivered once


def test_a_worker_killed_mid_job(db_url: str, series: dict[str, SentSeries], tmp_path: Path) -> None:
    """SIGKILL to the worker while it runs a job: after the lease expires another worker runs the job again, and
    the destination holds exactly one SEG and one SR."""
    with dcmtk_storescp(tmp_path / "storescp") as scp:
        config = NodeConfig(tmp_path / "node", db_url, sections={"queue": {"lease_s": 4.0}}, destinations=[
            {"name": "storescp", "ae_title": scp.ae_title, "host": "127.0.0.1", "port": scp.port}])
        with node_process(config, "serve"):
            assert storescu(config.port, series["hip"].files).statuses == [0x0000] * len(series["hip"].files)
            engine = config.engine()
            try:
                wait_for("a queued job", lambda: [j for j in jobs_of(engine) if j.status is JobStatus.QUEUED])
                with node_process(config, "worker", wait_port=False, name="worker-1") as first:
                    running = wait_for("the job running", lambda: [j for j in jobs_of(engine)
                                                                   if j.status is JobStatus.RUNNING],
                                       timeout=60, interval=0.05)
                    assert f":{first.process.pid}:" in (running[0].lease_owner or "")
                    os.kill(first.process.pid, signal.SIGKILL)
                    first.process.wait(timeout=10)
                (job,) = jobs_of(engine)
                assert job.status is JobStatus.RUNNING  # killed mid-job: nothing was finished
                with node_process(config, "worker", wait_port=False, name="worker-2"):
                    done = wait_for("the job done by the second worker",
                                    lambda: [j for j in jobs_of(engine) if j.status is JobStatus.DONE], timeout=120)
                    wait_for("deliveries sent", lambda: _all_sent(engine, 3), timeout=60)
                messages = " ".join(rows(engine, select(Event.message).where(Event.kind == "job.retry")))
            finally:
                engine.dispose()
        (job,) = done
        assert job.attempts == 2
        assert "without a heartbeat (worker stopped or killed during attempt 1)" in messages
        classes = _received_classes(tmp_path / "storescp")
    assert classes.count(SEG_CLASS) == 1
    assert classes.count(COMPREHENSIVE_SR) == 1
    assert len(classes) == 3
