"""``sarcoscreen demo``: the whole product in one command, on embedded defaults (SQLite and local folders).

1. makes a synthetic hip CT with exact ground truth (the digital phantom);
2. starts a destination: Orthanc when it is installed (a real PACS, ``--destination orthanc``), otherwise a
   small built-in storage SCP that writes what it receives into a folder (``--destination builtin``);
3. starts the node in this process (`sarcoscreen.node.service.NodeService`: Storage SCP, series watcher, sender,
   and one worker process) on SQLite under ``OUT/sarcoscreen-data``, listening on a free loopback port;
4. sends the phantom to the node with a real C-STORE SCU (`sarcoscreen.node.storage_scu.send_files`, the same as
   ``sarcoscreen send``);
5. waits until the series was stable, queued, processed and its SEG, SR and key image were accepted by the
   destination, then shows what arrived there, the results table (as ``sarcoscreen results``) and the engine's
   group masses next to the phantom's exact ground truth.

Everything stays under ``--out`` and on loopback; the node and the destination are stopped at the end. The
configuration used is written to ``OUT/sarcoscreen.toml``, so ``sarcoscreen --config OUT/sarcoscreen.toml results``
(or ``jobs``, ``run``) works on the demo's database afterwards.

The engine is ``--engine threshold`` (default) or ``--engine bayesian-unet``: the Bayesian U-Net with the bundle of
``--bundle``, else ``engine.bundle_path`` when configured, else the bundle shipped with sarcoscreen
(`sarcoscreen.inference.engines.unet.shipped_bundle`), with the bundle's number of MC samples unless
``--mc-samples`` says otherwise. The bundle is checked (manifest, weights checksum) before anything starts, and the
demo prints which engine it runs - the bundle, its training data and intended use - and which engine and version
the node recorded for the job.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    ComprehensiveSRStorage,
    EncapsulatedPDFStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    Verification,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from sarcoscreen.db.models import Delivery, DeliveryStatus, GroupResult, GroupSide, Job, JobStatus, Output, Series
from sarcoscreen.db.models import SeriesState as State
from sarcoscreen.db.queries import results
from sarcoscreen.inference.catalogue import Group
from sarcoscreen.inference.phantom import PhantomParameterError, PhantomParameters, make_phantom
from sarcoscreen.node.config import DestinationSettings, EngineSettings, Settings
from sarcoscreen.node.loopback import free_port, wait_for_port
from sarcoscreen.node.results_command import format_results
from sarcoscreen.node.storage_scu import Destination, DestinationError, send_files
from sarcoscreen.reports.results_table import display_groups, group_label, own_groups_note

__all__ = ["DemoEngineError", "comparison_table", "demo_engine", "run_demo"]

_LABEL_MAP_SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.7"
_KINDS = {"1.2.840.10008.5.1.4.1.1.66.4": "SEG", _LABEL_MAP_SEGMENTATION: "SEG (label map)",
          "1.2.840.10008.5.1.4.1.1.88.33": "SR", "1.2.840.10008.5.1.4.1.1.7": "key image (SC)",
          "1.2.840.10008.5.1.4.1.1.104.1": "key image (PDF)"}


# --- ground truth -------------------------------------------------------------------------------------------


def _rule_key(density_rule: str) -> str | None:
    """The ground-truth column that used the same density rule, if the phantom records it."""
    if "excluded" in density_rule:
        return None
    if density_rule.startswith("constant 1.04"):
        return "constant_1.04"
    if density_rule.startswith("constant 1.06"):
        return "constant_1.06"
    if density_rule.startswith("HU-linear"):
        return "hu_linear"
    return None


def comparison_table(measured: dict[Group, tuple[float | None, str]], density_rule: str, ground_truth: dict) -> str:
    """Group masses of both sides measured by the engine - ``{group: (grams or None, completeness)}``, grams only
    for a complete group - against the phantom's ground truth for the same density rule; the reference study's
    groups first, sarcoscreen's own after them (marked); a group without a ground-truth mass says so."""
    key = _rule_key(density_rule)
    if key is None:
        return (f"(no ground truth for the density rule '{density_rule}': the phantom records constant "
                "1.04/1.06 g/cm3 and HU-linear without exclusion)")
    lines = [f"{'group':30s} {'engine kg':>10s} {'truth kg':>10s} {'difference':>11s}"]
    for group in display_groups():
        row = next((g for g in ground_truth["groups"] if g["group"] == group.value and g["side"] == "both"), None)
        truth_g = row["mass_g"].get(key) if row is not None else None
        truth = "-" if truth_g is None else f"{float(truth_g) / 1000.0:.2f}"
        grams, completeness = measured.get(group, (None, "not measured"))
        label = group_label(group)
        if grams is None or truth_g is None:
            engine = "-" if grams is None else f"{grams / 1000.0:.2f}"
            why = completeness if grams is None else "no ground truth for this group"
            lines.append(f"{label:30s} {engine:>10s} {truth:>10s}   {why}")
            continue
        difference = 100 * (grams / float(truth_g) - 1)
        lines.append(f"{label:30s} {grams / 1000.0:10.2f} {truth:>10s} {difference:+10.1f}%")
    return "\n".join([*lines, *own_groups_note()])


# --- destinations -------------------------------------------------------------------------------------------


@dataclass
class _Destination:
    name: str
    ae_title: str
    port: int
    received: Callable[[], list[tuple[str, str]]]
    """(kind, SOP Instance UID) of every object it holds."""
    where: str


@contextmanager
def _builtin_destination(folder: Path) -> Iterator[_Destination]:
    """A storage SCP that accepts SEG, SR and key images and writes them into `folder` (a stand-in PACS)."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def on_store(event: evt.Event) -> int:
        data = event.encoded_dataset(include_meta=True)
        with lock:
            (folder / f"{event.request.AffectedSOPInstanceUID}.dcm").write_bytes(data)
        return 0x0000

    ae = AE(ae_title="DEMOPACS")
    for sop_class in (SegmentationStorage, _LABEL_MAP_SEGMENTATION, ComprehensiveSRStorage,
                      SecondaryCaptureImageStorage, EncapsulatedPDFStorage, Verification):
        ae.add_supported_context(sop_class)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])

    def received() -> list[tuple[str, str]]:
        out = []
        for path in sorted(folder.glob("*.dcm")):
            ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
            out.append((_KINDS.get(str(ds.SOPClassUID), str(ds.SOPClassUID)), str(ds.SOPInstanceUID)))
        return out

    try:
        yield _Destination("demo-pacs", "DEMOPACS", port, received, f"the built-in storage SCP, files in {folder}")
    finally:
        server.shutdown()


@contextmanager
def _orthanc_destination(folder: Path, executable: str) -> Iterator[_Destination]:
    """Orthanc on loopback ports with its storage in `folder`, stopped afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    dicom_port, http_port = free_port(), free_port()
    config = {"Name": "sarcoscreen-demo", "StorageDirectory": str(folder / "storage"),
              "IndexDirectory": str(folder / "index"), "DicomAet": "ORTHANC", "DicomPort": dicom_port,
              "DicomServerEnabled": True, "DicomCheckCalledAet": True, "DicomAlwaysAllowStore": True,
              "HttpPort": http_port, "HttpServerEnabled": True, "RemoteAccessAllowed": False,
              "AuthenticationEnabled": False, "Plugins": [], "OverwriteInstances": True}
    (folder / "orthanc.json").write_text(json.dumps(config), encoding="utf-8")
    log = (folder / "orthanc.log").open("wb")
    process = subprocess.Popen([executable, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)

    def get(path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}{path}", timeout=10) as response:
            return json.loads(response.read())

    def received() -> list[tuple[str, str]]:
        out = []
        for orthanc_id in get("/instances"):
            tags = get(f"/instances/{orthanc_id}/simplified-tags")
            out.append((_KINDS.get(tags.get("SOPClassUID", ""), tags.get("Modality", "?")), tags["SOPInstanceUID"]))
        return sorted(out)

    try:
        wait_for_port(http_port, 30)
        wait_for_port(dicom_port, 30)
        yield _Destination("orthanc", "ORTHANC", dicom_port, received,
                           f"Orthanc (web interface http://127.0.0.1:{http_port}/ while the demo runs)")
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


# --- the demo -----------------------------------------------------------------------------------------------

_TIMEOUT_S = {"threshold": 600.0, "bayesian-unet": 3600.0}
"""How long the demo waits for the series by default: the U-Net on a CPU takes minutes for a 256 x 256 phantom."""


class DemoEngineError(Exception):
    """The chosen engine cannot run (no bundle, a refused bundle, no torch); the message says why."""


def demo_engine(args: argparse.Namespace, settings: EngineSettings) -> tuple[EngineSettings, list[str]]:
    """The ``[engine]`` settings of the demo's node for ``--engine`` / ``--bundle`` / ``--mc-samples``, and the
    lines that say what it is. For ``bayesian-unet`` the bundle (``--bundle``, else the configured
    ``bundle_path``, else the shipped one) is read and checked here, with its weights' checksum
    (`sarcoscreen.inference.engines.unet.describe_bundle`), so a missing or refused bundle stops the demo before it
    starts anything; `DemoEngineError` says why."""
    name = getattr(args, "engine", None) or "threshold"
    mc_samples = getattr(args, "mc_samples", None)
    if name != "bayesian-unet":
        if mc_samples is not None or getattr(args, "bundle", None) is not None:
            raise DemoEngineError("--bundle and --mc-samples are options of --engine bayesian-unet")
        return settings.model_copy(update={"name": name}), [f"engine: {name}"]
    if mc_samples is not None and not 1 <= mc_samples <= 1000:
        raise DemoEngineError(f"--mc-samples {mc_samples} out of range 1..1000")
    from sarcoscreen.inference.engines.base import EngineError
    from sarcoscreen.inference.engines.unet import describe_bundle
    from sarcoscreen.inference.engines.unet.bundle_info import labelling_line
    from sarcoscreen.inference.engines.unet.manifest import SYNTHETIC_WARNING
    from sarcoscreen.inference.engines.unet.shipped_bundle import shipped_bundle_path

    chosen = getattr(args, "bundle", None) or settings.bundle_path
    try:
        bundle = Path(chosen).resolve() if chosen is not None else shipped_bundle_path()
        manifest = describe_bundle(bundle)
    except EngineError as exc:
        raise DemoEngineError(str(exc)) from None
    samples = mc_samples or settings.mc_samples or manifest.mc_samples
    where = ("shipped with sarcoscreen" if chosen is None else "--bundle" if getattr(args, "bundle", None)
             else "engine.bundle_path")
    lines = [f"engine: bayesian-unet, model bundle {manifest.name} {manifest.version} ({where}: {bundle}; sha256 "
             f"{manifest.weights_sha256[:12]}), T = {samples} Monte-Carlo dropout samples per slice"
             + ("" if samples != manifest.mc_samples else " (the bundle's default)") + f", device {settings.device}"]
    label = labelling_line(manifest)
    if label:
        lines.append(label)
    if manifest.training_data.synthetic:
        lines.append(f"WARNING: {SYNTHETIC_WARNING}")
    return settings.model_copy(update={"name": "bayesian-unet", "bundle_path": bundle, "mc_samples": samples}), lines


def _demo_settings(settings: Settings, out: Path, destination: _Destination, port: int, log_level: str) -> Settings:
    """Embedded defaults under `out` (SQLite, local folders), short waits, the demo destination."""
    data_dir = (out / "sarcoscreen-data").resolve()
    return settings.model_copy(update={
        "logging": settings.logging.model_copy(update={"level": log_level}),
        "database": settings.database.model_copy(update={"url": f"sqlite:///{data_dir / 'sarcoscreen.db'}"}),
        "storage": settings.storage.model_copy(update={"data_dir": data_dir, "spool_dir": None, "quarantine_dir": None,
                                                       "output_dir": None, "min_free_mb": 0}),
        "network": settings.network.model_copy(update={"host": "127.0.0.1", "port": port, "stable_age_s": 2.0,
                                                       "allowed_calling": [], "tls_certificate": None,
                                                       "tls_private_key": None, "tls_ca_certificates": None,
                                                       "tls_require_client_certificate": False}),
        "queue": settings.queue.model_copy(update={"poll_s": 0.5}),
        "delivery": settings.delivery.model_copy(update={"retry_s": 1.0, "retry_max_s": 5.0}),
        "destinations": [DestinationSettings(name=destination.name, ae_title=destination.ae_title,
                                             host="127.0.0.1", port=destination.port)],
    })


def _write_config(settings: Settings, path: Path) -> None:
    d = settings.destinations[0]
    engine = settings.engine
    engine_text = f'\n[engine]\nname = "{engine.name}"\n'
    if engine.name == "bayesian-unet":
        engine_text += f'bundle_path = "{engine.bundle_path}"\nmc_samples = {engine.mc_samples}\n'
    path.write_text(
        "# The configuration `sarcoscreen demo` ran with: sarcoscreen --config this-file results|jobs|run\n"
        f'[network]\nhost = "127.0.0.1"\nport = {settings.network.port}\nstable_age_s = '
        f"{settings.network.stable_age_s}\n\n"
        f'[database]\nurl = "{settings.database.url}"\n\n[storage]\ndata_dir = "{settings.storage.data_dir}"\n\n'
        f'[[destinations]]\nname = "{d.name}"\nae_title = "{d.ae_title}"\nhost = "{d.host}"\nport = {d.port}\n'
        + engine_text, encoding="utf-8")


def _progress(session: Session, series_uid: str) -> tuple[str, Job | None, int, int]:
    series = session.execute(select(Series).where(Series.series_instance_uid == series_uid)).scalar_one_or_none()
    if series is None:
        return "not indexed yet", None, 0, 0
    job = session.execute(select(Job).where(Job.series_id == series.id).order_by(Job.id.desc()).limit(1)
                          ).scalar_one_or_none()
    deliveries = session.execute(select(Delivery.status).join(Output).where(Output.job_id == job.id)
                                 ).scalars().all() if job else []
    sent = sum(status is DeliveryStatus.SENT for status in deliveries)
    return series.state.value, job, sent, len(deliveries)


def _wait(service_db: Any, series_uid: str, timeout: float) -> tuple[str, Job | None]:
    """Follow the series through the node, printing each change; until delivered, failed or `timeout`."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    shown = ""
    while time.monotonic() < deadline:
        with Session(service_db) as session:
            state, job, sent, total = _progress(session, series_uid)
        job_text = f", job {job.id} {job.status.value}" if job else ""
        delivery_text = f", {sent}/{total} outputs accepted by the destination" if total else ""
        line = f"{state}{job_text}{delivery_text}"
        if line != shown:
            print(f"    {time.monotonic() - started:5.1f} s  series {line}")
            shown = line
        if state in (State.SKIPPED.value, State.FAILED.value):
            return state, job
        if job is not None and job.status is JobStatus.DONE and total and sent == total:
            return "delivered", job
        time.sleep(0.3)
    return "timeout", None


def _skip_reason(service_db: Any, series_uid: str) -> str | None:
    """Why the node skipped the series (routing, or no gluteal muscle found), if it did."""
    with Session(service_db) as session:
        return session.execute(select(Series.skip_reason).where(Series.series_instance_uid == series_uid)
                               ).scalar_one_or_none()


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from sarcoscreen.node.service import NodeService, ServiceError

    out: Path = args.out.resolve()
    phantom_dir = out / "phantom"
    try:
        engine_settings, engine_lines = demo_engine(args, settings.engine)
    except DemoEngineError as exc:
        print(f"sarcoscreen: --engine {getattr(args, 'engine', None) or 'threshold'}: {exc}")
        return 2
    settings = settings.model_copy(update={"engine": engine_settings})
    timeout = getattr(args, "timeout", None) or _TIMEOUT_S[engine_settings.name]
    if (out / "sarcoscreen-data").exists():
        shutil.rmtree(out / "sarcoscreen-data")  # a fresh node each time; the phantom is remade too
    print(f"1/5 making a synthetic hip CT (digital phantom, {args.matrix}x{args.matrix}, {args.slice_mm:g} mm "
          f"slices) in {phantom_dir}")
    try:
        phantom = make_phantom(PhantomParameters(matrix=args.matrix, slice_mm=args.slice_mm, seed=args.seed),
                               phantom_dir)
    except PhantomParameterError as exc:
        print(f"sarcoscreen: {exc}")
        return 2
    print(f"    {phantom.slices} slices in {phantom.seconds:.1f} s")
    orthanc = shutil.which("Orthanc") if args.destination in ("auto", "orthanc") else None
    if args.destination == "orthanc" and orthanc is None:
        print("sarcoscreen: --destination orthanc: the Orthanc executable is not installed")
        return 2
    destination_cm = (_orthanc_destination(out / "orthanc", orthanc) if orthanc
                      else _builtin_destination(out / "destination"))
    with destination_cm as destination:
        print(f"2/5 destination: {destination.ae_title}@127.0.0.1:{destination.port}, {destination.where}")
        # The node's log lines would drown the demo's own output: warnings only, unless --log-level says otherwise.
        log_level = getattr(args, "log_level", None) or "WARNING"
        logging.getLogger("sarcoscreen").setLevel(log_level)
        node_settings = _demo_settings(settings, out, destination, free_port(), log_level)
        _write_config(node_settings, out / "sarcoscreen.toml")
        service = NodeService(node_settings, workers=1)
        try:
            service.start()
        except ServiceError as exc:
            print(f"sarcoscreen: the node cannot start: {exc}")
            return 1
        try:
            print(f"3/5 node {node_settings.network.ae_title} listening on 127.0.0.1:{service.port} (SQLite "
                  f"{node_settings.storage.data_dir / 'sarcoscreen.db'}, engine '{node_settings.engine.name}', one "
                  "worker process)")
            for line in engine_lines:
                print(f"    {line}")
            started = time.monotonic()
            try:
                sent = send_files([phantom.dicom_dir], Destination(node_settings.network.ae_title, "127.0.0.1",
                                                                   service.port, "DEMOSCU"))
            except DestinationError as exc:
                print(f"sarcoscreen: cannot send the phantom to the node: {exc}")
                return 1
            seconds = time.monotonic() - started
            print(f"4/5 sent {sent.sent} of {len(sent.outcomes)} instances by C-STORE in {seconds:.1f} s "
                  f"({sent.sent / max(seconds, 1e-9):.0f}/s); each one was stored, fsynced and indexed before its "
                  "success response")
            if sent.failed:
                print(f"sarcoscreen: {len(sent.failed)} instances were refused: {sent.failed[0].error}")
                return 1
            print(f"5/5 waiting: stable after {node_settings.network.stable_age_s:g} s idle -> routing -> job -> "
                  "worker -> outbox -> destination")
            assert service.db is not None
            series_uid = str(dcmread(next(phantom.dicom_dir.glob("*.dcm")), stop_before_pixels=True,
                                     specific_tags=["SeriesInstanceUID"]).SeriesInstanceUID)
            outcome, job = _wait(service.db, series_uid, timeout)
            if outcome != "delivered":
                reason = job.error if job is not None and job.error else _skip_reason(service.db, series_uid)
                engine_text = f" (engine {job.engine_name} {job.engine_version})" if job and job.engine_name else ""
                print(f"sarcoscreen: the series ended as {outcome}{engine_text}" + (f": {reason}" if reason else ""))
                return 1
            print(f"    done {time.monotonic() - started:.1f} s after the first instance was sent")
            assert job is not None
            print(f"    measured by engine {job.engine_name} {job.engine_version} (as recorded for job {job.id})\n")
            arrived = destination.received()
            print(f"At the destination ({destination.name}):")
            for kind, uid in arrived:
                print(f"  {kind:16s} {uid}")
            with Session(service.db) as session:
                rows = results(session)
                groups = {Group(g.muscle_group): (g.smm_g, g.completeness.value) for g in session.execute(
                    select(GroupResult).where(GroupResult.job_id == job.id, GroupResult.side == GroupSide.BOTH)
                ).scalars()}
                outputs = session.execute(select(Output).where(Output.job_id == job.id)).scalars().all()
            print("\nResults (sarcoscreen results):\n")
            print(format_results(rows, "table"))
            density = _density_rule(node_settings)
            print("Engine against the phantom's exact ground truth (both sides):\n")
            print(comparison_table(groups, density, phantom.ground_truth))
        finally:
            service.stop()
    folder = node_settings.storage.outputs / outputs[0].path.rsplit("/", 1)[0] if outputs else None
    print("\nFiles:")
    print(f"  phantom        {phantom.dicom_dir} (CT), {phantom.labels_path.name}, {phantom.ground_truth_path.name}")
    print(f"  node data      {node_settings.storage.data_dir} (SQLite database, spool, outputs)")
    if folder is not None:
        print(f"  job outputs    {folder} (seg.dcm, sr.dcm, key_image.dcm, measurements.json/.csv, overlay.png)")
    print(f"  configuration  {out / 'sarcoscreen.toml'}  (sarcoscreen --config {out / 'sarcoscreen.toml'} jobs)")
    print("\nThe phantom is synthetic: these numbers show how the engine works, not a patient's muscle mass.")
    return 0


def _density_rule(settings: Settings) -> str:
    from sarcoscreen.node.analyze_command import density_rule_from

    return density_rule_from(settings).describe()
