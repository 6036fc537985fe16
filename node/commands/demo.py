"""``sarcoscreen demo``: the whole product in one command, on embedded defaults (SQLite and local folders).

1. makes a synthetic hip CT with exact ground truth (the digital phantom);
2. starts a destination: Orthanc when it is installed (a real PACS, ``--destination orthanc``), otherwise a
   small built-in storage SCP that writes what it receives into a folder (``--destination builtin``;
   `sarcoscreen.node.demo_destinations`);
3. starts the node in this process (`sarcoscreen.node.service.NodeService`: Storage SCP, series watcher, sender,
   and one worker process) on SQLite under ``OUT/sarcoscreen-data``, listening on a free loopback port, with the QA
   web console on another (its address and the user ``demo``'s random password are printed once);
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

A wrong option (an engine's bundle that cannot be used, Orthanc asked for and not installed, bad phantom
parameters) ends with one line on stderr and exit status 2; a node that cannot start, instances the node refuses
or a series that is not delivered, with exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from sarcoscreen.inference.catalogue import Group
from sarcoscreen.node.commands.command import SubParsers, loaded
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import EngineSettings, Settings

if TYPE_CHECKING:
    from sarcoscreen.node.demo_destinations import DemoDestination

__all__ = ["DemoEngineError", "add_parser", "comparison_table", "demo_engine", "run"]


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser(
        "demo", help="The main job on embedded defaults: a phantom hip CT sent to a node started for it, analysed, "
        "and its SEG and SR delivered to a destination (Orthanc when installed).")
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="Folder for everything the demo makes.")
    parser.add_argument("--matrix", type=int, default=256, help="Rows and columns of the phantom's slices.")
    parser.add_argument("--slice-mm", type=float, default=2.0, help="Slice spacing of the phantom in mm.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the phantom's noise.")
    parser.add_argument("--no-progress", action="store_true", help="No progress bars.")
    parser.add_argument("--destination", choices=("auto", "orthanc", "builtin"), default="auto",
                        help="Where the node sends SEG/SR: Orthanc (auto: when installed) or a built-in storage SCP.")
    parser.add_argument("--timeout", type=float, help="Give up waiting after this many seconds (default 600; 3600 "
                        "with --engine bayesian-unet).")
    parser.add_argument("--engine", choices=("threshold", "bayesian-unet"), default="threshold",
                        help="The engine the node runs (default threshold). bayesian-unet needs the 'unet' extra and "
                             "is slow on a CPU: --mc-samples 1 and --slice-mm 5 make a quick run.")
    parser.add_argument("--bundle", type=Path, metavar="PATH",
                        help="bayesian-unet: the model bundle (default: engine.bundle_path when configured, else the "
                             "bundle shipped with sarcoscreen).")
    parser.add_argument("--mc-samples", type=int, metavar="T",
                        help="bayesian-unet: Monte-Carlo dropout samples per slice (default: the bundle's).")
    parser.set_defaults(run=run, needs_settings=True)


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
    from sarcoscreen.reports.results_table import display_groups, group_label, own_groups_note

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


def _destination(args: argparse.Namespace, out: Path) -> AbstractContextManager[DemoDestination]:
    """The context manager of the destination ``--destination`` asks for (`UserError` when Orthanc is asked for
    and not installed)."""
    from sarcoscreen.node.demo_destinations import builtin_destination, orthanc_destination

    orthanc = shutil.which("Orthanc") if args.destination in ("auto", "orthanc") else None
    if args.destination == "orthanc" and orthanc is None:
        raise UserError("--destination orthanc: the Orthanc executable is not installed", ExitCode.USAGE)
    return orthanc_destination(out / "orthanc", orthanc) if orthanc else builtin_destination(out / "destination")


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    from pydicom import dcmread
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from sarcoscreen.db.models import GroupResult, GroupSide, Output
    from sarcoscreen.db.queries import results
    from sarcoscreen.inference.phantom import PhantomParameterError, PhantomParameters, make_phantom
    from sarcoscreen.node.demo_node import (
        DEMO_USER,
        add_demo_user,
        demo_settings,
        skip_reason,
        wait_for_delivery,
        write_config,
    )
    from sarcoscreen.node.loopback import free_port
    from sarcoscreen.node.results_view import format_results
    from sarcoscreen.node.service import NodeService, ServiceError
    from sarcoscreen.node.storage_scu import Destination, DestinationError, send_files

    settings = loaded(settings)
    out: Path = args.out.resolve()
    phantom_dir = out / "phantom"
    try:
        engine_settings, engine_lines = demo_engine(args, settings.engine)
    except DemoEngineError as exc:
        raise UserError(f"--engine {getattr(args, 'engine', None) or 'threshold'}: {exc}", ExitCode.USAGE) from None
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
        raise UserError(str(exc), ExitCode.USAGE) from None
    print(f"    {phantom.slices} slices in {phantom.seconds:.1f} s")
    with _destination(args, out) as destination:
        print(f"2/5 destination: {destination.ae_title}@127.0.0.1:{destination.port}, {destination.where}")
        # The node's log lines would drown the demo's own output: warnings only, unless --log-level says otherwise.
        log_level = getattr(args, "log_level", None) or "WARNING"
        logging.getLogger("sarcoscreen").setLevel(log_level)
        node_settings = demo_settings(settings, out, destination, free_port(), log_level)
        write_config(node_settings, out / "sarcoscreen.toml")
        service = NodeService(node_settings, workers=1)
        try:
            service.start()
        except ServiceError as exc:
            raise UserError(f"the node cannot start: {exc}", ExitCode.FAILED) from None
        try:
            print(f"3/5 node {node_settings.network.ae_title} listening on 127.0.0.1:{service.port} (SQLite "
                  f"{node_settings.storage.data_dir / 'sarcoscreen.db'}, engine '{node_settings.engine.name}', one "
                  "worker process)")
            for line in engine_lines:
                print(f"    {line}")
            if service.db is not None and service.console is not None:
                print(f"    web console {service.console.url} - user {DEMO_USER}, password {add_demo_user(service.db)} "
                      "(while the demo runs)")
            started = time.monotonic()
            try:
                sent = send_files([phantom.dicom_dir], Destination(node_settings.network.ae_title, "127.0.0.1",
                                                                   service.port, "DEMOSCU"))
            except DestinationError as exc:
                raise UserError(f"cannot send the phantom to the node: {exc}", ExitCode.FAILED) from None
            seconds = time.monotonic() - started
            print(f"4/5 sent {sent.sent} of {len(sent.outcomes)} instances by C-STORE in {seconds:.1f} s "
                  f"({sent.sent / max(seconds, 1e-9):.0f}/s); each one was stored, fsynced and indexed before its "
                  "success response")
            if sent.failed:
                raise UserError(f"{len(sent.failed)} instances were refused: {sent.failed[0].error}", ExitCode.FAILED)
            print(f"5/5 waiting: stable after {node_settings.network.stable_age_s:g} s idle -> routing -> job -> "
                  "worker -> outbox -> destination")
            if service.db is None:  # pragma: no cover - a started service has its database
                raise UserError("the node started without a database", ExitCode.FAILED)
            series_uid = str(dcmread(next(phantom.dicom_dir.glob("*.dcm")), stop_before_pixels=True,
                                     specific_tags=["SeriesInstanceUID"]).SeriesInstanceUID)
            outcome, job = wait_for_delivery(service.db, series_uid, timeout)
            if outcome != "delivered" or job is None:
                reason = job.error if job is not None and job.error else skip_reason(service.db, series_uid)
                engine_text = f" (engine {job.engine_name} {job.engine_version})" if job and job.engine_name else ""
                raise UserError(f"the series ended as {outcome}{engine_text}" + (f": {reason}" if reason else ""),
                                ExitCode.FAILED)
            print(f"    done {time.monotonic() - started:.1f} s after the first instance was sent")
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
    print(f"  web console    sarcoscreen --config {out / 'sarcoscreen.toml'} web  (the demo's results afterwards; "
          f"user {DEMO_USER}, the same password)")
    print("\nThe phantom is synthetic: these numbers show how the engine works, not a patient's muscle mass.")
    return ExitCode.OK


def _density_rule(settings: Settings) -> str:
    from sarcoscreen.node.analysis import density_rule_from

    return density_rule_from(settings).describe()
