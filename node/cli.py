"""The ``sarcoscreen`` command line.

Each sub-command is a small function that reads the settings, calls the package that owns the work and prints
the outcome. Errors that a user can fix (bad configuration, unreadable series, bad input files) are printed as
one clear message with exit status 2 (usage/configuration) or 1 (input or processing), never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from sarcoscreen.node.config import ConfigError, Settings, load_settings
from sarcoscreen.node.logging_setup import configure_logging

__all__ = ["main"]

logger = logging.getLogger("sarcoscreen.cli")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


Handler = Callable[[argparse.Namespace, Settings], int]


class CommandError(Exception):
    """A command could not do what was asked; the message says why in words."""


def _version() -> str:
    try:
        return version("sarcoscreen")
    except PackageNotFoundError:  # running from a source tree without installation
        return "0+unknown"


# --- config -------------------------------------------------------------------------------------------------


def _cmd_config_show(args: argparse.Namespace, settings: Settings) -> int:
    from sarcoscreen.node.config_text import effective_toml

    print(effective_toml(settings), end="")
    return EXIT_OK


def _cmd_config_example(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.node.config_text import example_toml

    print(example_toml(), end="")
    return EXIT_OK


# --- db -----------------------------------------------------------------------------------------------------


def _database_errors_as_command_errors(handler: Handler) -> Handler:
    """Let a handler's `MigrationError` (unreachable database, unknown revision) end as one clear message."""

    def wrapped(args: argparse.Namespace, settings: Settings) -> int:
        from sarcoscreen.db.migrate import MigrationError

        try:
            return handler(args, settings)
        except MigrationError as exc:
            raise CommandError(str(exc)) from None

    return wrapped


@_database_errors_as_command_errors
def _cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from sarcoscreen.db import migrate
    from sarcoscreen.db.session import mask_url

    migrate.upgrade(settings.database_url, args.revision)
    print(f"database {mask_url(settings.database_url)} at revision {migrate.current(settings.database_url)}")
    return EXIT_OK


@_database_errors_as_command_errors
def _cmd_db_downgrade(args: argparse.Namespace, settings: Settings) -> int:
    from sarcoscreen.db import migrate
    from sarcoscreen.db.session import mask_url

    migrate.downgrade(settings.database_url, args.revision)
    revision = migrate.current(settings.database_url) or "(empty)"
    print(f"database {mask_url(settings.database_url)} at revision {revision}")
    return EXIT_OK


@_database_errors_as_command_errors
def _cmd_db_current(args: argparse.Namespace, settings: Settings) -> int:
    from sarcoscreen.db import migrate
    from sarcoscreen.db.session import mask_url

    current = migrate.current(settings.database_url)
    head = migrate.head()
    state = "up to date" if current == head else f"head is {head}: run `sarcoscreen db upgrade`"
    print(f"database {mask_url(settings.database_url)}: revision {current or '(empty)'} ({state})")
    return EXIT_OK


# --- heights ------------------------------------------------------------------------------------------------


@_database_errors_as_command_errors
def _cmd_heights_import(args: argparse.Namespace, settings: Settings) -> int:
    from sarcoscreen.db.heights import import_heights_csv
    from sarcoscreen.db.migrate import ensure_schema
    from sarcoscreen.db.session import create_engine_from_url, session_scope

    if settings.database.migrate_on_start:
        ensure_schema(settings.database_url)
    engine = create_engine_from_url(settings.database_url)
    try:
        with session_scope(engine) as session:
            report = import_heights_csv(session, args.file)
    finally:
        engine.dispose()
    print(report.summary())
    for error in report.errors:
        print(f"  {error}", file=sys.stderr)
    return EXIT_OK if not report.errors else EXIT_FAILED


# --- phantom, inspect, demo ---------------------------------------------------------------------------------


def _cmd_phantom(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.node.phantom_command import run_phantom

    return run_phantom(args)


def _cmd_phantom_cohort(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.node.phantom_command import run_cohort

    return run_cohort(args)


def _cmd_phantom_crop(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.node.phantom_command import run_crop

    return run_crop(args)


def _cmd_inspect(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.node.inspect_command import run_inspect

    return run_inspect(args)


def _cmd_analyze(args: argparse.Namespace, settings: Settings) -> int:
    from sarcoscreen.node.analyze_command import run_analyze

    return run_analyze(args, settings)


def _cmd_send(args: argparse.Namespace, settings: Settings | None) -> int:
    import dataclasses

    from sarcoscreen.node.storage_scu import DestinationError, parse_destination, send_files
    from sarcoscreen.node.tls import TlsConfigError, client_context

    try:
        if "@" in args.to:
            destination = parse_destination(args.to, args.calling_ae)
        else:  # the name of a [[destinations]] entry, with its TLS settings
            from sarcoscreen.node.delivery import destination_of

            configured = {d.name: d for d in load_settings(args.config).destinations}
            if args.to not in configured:
                known = ", ".join(configured) or "none configured"
                raise CommandError(f"--to {args.to!r} is neither AET@host:port nor a configured destination "
                                   f"({known})")
            destination = destination_of(configured[args.to], args.calling_ae)
        if args.tls or args.tls_ca or args.tls_cert:
            if bool(args.tls_cert) != bool(args.tls_key):
                raise CommandError("--tls-cert and --tls-key go together")
            context = client_context(args.tls_ca, args.tls_cert, args.tls_key,
                                     check_hostname=not args.tls_no_verify_host)
            destination = dataclasses.replace(destination, tls=context)
        result = send_files(args.paths, destination, timeout=args.timeout)
    except (DestinationError, TlsConfigError) as exc:
        raise CommandError(str(exc)) from None
    print(f"sent {result.sent} of {len(result.outcomes)} files to {destination}")
    for outcome in result.failed:
        status = f"status 0x{outcome.status:04X}" if outcome.status is not None else "not sent"
        print(f"  {outcome.path}: {status} {outcome.error}".rstrip(), file=sys.stderr)
    return EXIT_OK if not result.failed else EXIT_FAILED


# --- the node: serve, worker, run, results, jobs --------------------------------------------------------------


def _node_errors_as_command_errors(handler: Handler) -> Handler:
    """Start-up problems of the node (database, port, certificates) end as one clear message."""

    def wrapped(args: argparse.Namespace, settings: Settings) -> int:
        from sarcoscreen.db.migrate import MigrationError
        from sarcoscreen.node.service import ServiceError

        try:
            return handler(args, settings)
        except (MigrationError, ServiceError) as exc:
            raise CommandError(str(exc)) from None

    return wrapped


@_node_errors_as_command_errors
def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from sarcoscreen.node.service import serve_until_signal

    serve_until_signal(settings, workers=0)
    return EXIT_OK


@_node_errors_as_command_errors
def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from sarcoscreen.node.service import serve_until_signal

    serve_until_signal(settings, workers=args.concurrency or settings.worker.concurrency)
    return EXIT_OK


@_node_errors_as_command_errors
def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from sarcoscreen.db.migrate import ensure_schema
    from sarcoscreen.node.worker import run_workers

    if settings.database.migrate_on_start:
        ensure_schema(settings.database_url)
    run_workers(settings, args.concurrency or settings.worker.concurrency)
    return EXIT_OK


@_database_errors_as_command_errors
def _cmd_results(args: argparse.Namespace, settings: Settings) -> int:
    from sarcoscreen.db.migrate import ensure_schema
    from sarcoscreen.node.results_command import run_results

    if settings.database.migrate_on_start:
        ensure_schema(settings.database_url)
    try:
        return run_results(args, settings)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


@_database_errors_as_command_errors
def _cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from sarcoscreen.db.migrate import ensure_schema
    from sarcoscreen.node import jobs_command

    if settings.database.migrate_on_start:
        ensure_schema(settings.database_url)
    action = getattr(args, "jobs_action", None)
    if action == "retry":
        return jobs_command.run_jobs_retry(args, settings)
    if action == "cancel":
        return jobs_command.run_jobs_cancel(args, settings)
    return jobs_command.run_jobs(args, settings)


@_database_errors_as_command_errors
def _cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    from sarcoscreen.db.migrate import ensure_schema
    from sarcoscreen.db.session import create_engine_from_url
    from sarcoscreen.node.retention import purge_expired

    storage = settings.storage
    if storage.retention_days <= 0 and storage.outputs_retention_days <= 0:
        print("retention is off (storage.retention_days and storage.outputs_retention_days are 0): nothing to do")
        return 0
    if settings.database.migrate_on_start:
        ensure_schema(settings.database_url)
    engine = create_engine_from_url(settings.database_url)
    try:
        print(purge_expired(engine, settings, dry_run=args.dry_run).summary())
    finally:
        engine.dispose()
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from sarcoscreen.node.demo import run_demo

    return run_demo(args, settings)


# --- the Bayesian U-Net: train, evaluate, bundle --------------------------------------------------------------


def _cmd_train(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.node.train_command import run_train

    return run_train(args)


def _cmd_evaluate(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.node.train_command import run_evaluate

    return run_evaluate(args)


def _cmd_bundle(args: argparse.Namespace, settings: Settings) -> int:
    from sarcoscreen.node.bundle_command import run_bundle

    return run_bundle(args, settings)


# --- validation study and calibration -----------------------------------------------------------------------


def _cmd_study(args: argparse.Namespace, settings: Settings) -> int:
    from sarcoscreen.node.study_command import run_study

    return run_study(args, settings)


def _cmd_calibrate(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.node.calibrate_command import run_calibrate

    return run_calibrate(args)


# --- parser -------------------------------------------------------------------------------------------------


def _add_phantom_options(parser: argparse.ArgumentParser) -> None:
    # No abbreviations: "phantom cohort --n 6" must not be taken for an abbreviation of a phantom option.
    # Options without a default here (None) get theirs in phantom_command: the procedural phantom's and the
    # --anatomy simulator's defaults differ (sex, height, slice spacing), and an option of the one given to the
    # other is refused by name.
    parser.allow_abbrev = False
    parser.add_argument("--out", type=Path, help="Folder for the DICOM series and ground truth (required).")
    parser.add_argument("--anatomy", type=Path, metavar="DIR",
                        help="Simulate the CT of a real label map instead (an annotation folder with label.mhd and "
                             "mask.mhd, e.g. ../shared/data/pelvic-annotation/Pelvic-Ref-002): real anatomy, CT "
                             "numbers calibrated on real CT (docs/phantom.md, 'CT from real label maps').")
    parser.add_argument("--fov", choices=("hip", "abdomen", "legs"),
                        help="hip (default): 2 cm above the iliac crest to below the ankle; abdomen: above the iliac "
                             "crest to ~2 cm below the lesser trochanter; legs: ~7 cm above the knee to below the "
                             "ankle.")
    parser.add_argument("--sex", choices=("F", "M"), help="Default F; with --anatomy M (the annotated cases are men: "
                        "prostate or uterus).")
    parser.add_argument("--height", "--height-m", dest="height", type=float, metavar="M",
                        help="Body height in metres (default 1.58; with --anatomy 1.75, written as PatientSize only).")
    parser.add_argument("--muscle-scale", type=float, help="Muscle cross-section scale (default 1 = typical).")
    parser.add_argument("--fat-mm", type=float, help="Subcutaneous fat thickness in mm (default 15).")
    parser.add_argument("--slice-mm", type=float, help="Slice spacing in mm (default 1, also the thickness; with "
                        "--anatomy 3).")
    parser.add_argument("--matrix", type=int, help="Rows and columns of each slice (default 512).")
    parser.add_argument("--noise-hu", type=float, help="Image noise standard deviation in HU (default 12).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fatty-infiltration", type=float, metavar="0..1",
                        help="Intramuscular fat and lower muscle attenuation (myosteatosis; default 0).")
    parser.add_argument("--metal-hip", choices=("none", "left", "right", "both"), default="none",
                        help="Total hip prostheses on one side or both, with streak artefacts.")
    parser.add_argument("--contrast", action="store_true", help="Intravenous contrast (portal-venous phase).")
    parser.add_argument("--no-table", dest="table", action="store_false", default=None,
                        help="Leave out the CT table top.")
    parser.add_argument("--offset-mm", type=float, nargs=2, metavar=("X", "Y"),
                        help="Shift the patient in the image (x to the patient's left, y posterior), mm.")
    parser.add_argument("--legs-touching", action="store_true", default=None,
                        help="Thighs and knees close enough to touch.")
    parser.add_argument("--arms", action="store_true", default=None, help="Forearms beside the pelvis and hips (arms "
                        "down).")
    parser.add_argument("--patient-position", choices=("HFS", "FFS"),
                        help="Head first (default) or feet first supine (feet first mirrors the image columns).")
    parser.add_argument("--age", type=int, help="Age in years (PatientAge; muscle attenuation; default 72).")
    anatomy = parser.add_argument_group("with --anatomy only")
    anatomy.add_argument("--crop", choices=("none", "abdomen-pelvis", "hip"),
                         help="Field of view: none (default; the annotated range, lumbar spine to mid-thigh), "
                              "abdomen-pelvis (down to the lesser trochanter), hip (iliac crest + 20 mm to lesser "
                              "trochanter - 50 mm).")
    anatomy.add_argument("--pixel-mm", type=float, help="In-plane pixel size (default 1.0; the 512 mm field is kept).")
    anatomy.add_argument("--thickness-mm", type=float, help="Slice thickness, FWHM (default 3.0, the annotation's).")
    anatomy.add_argument("--noise-scale", type=float, help="Noise relative to the real series' (default 1.0 = 7.1 HU "
                         "at 1 x 1 x 3 mm, rescaled to the voxel size).")
    anatomy.add_argument("--infiltration-scale", type=float, help="Multiplies every muscle's fat fraction (default "
                         "1.0, the profile measured on Pelvic-Ref-002; 0 = lean muscle).")
    anatomy.add_argument("--randomise", action="store_true", default=None,
                         help="Domain randomisation of intensities, blur and noise from the seed (training data).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sarcoscreen",
        description="Screen hip and abdominal CT for sarcopenia: a DICOM node, its worker and its tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--config", type=Path, help="TOML configuration file (default: $SARCOSCREEN_CONFIG or "
                        "./sarcoscreen.toml when present).")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="Override logging.level.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config = commands.add_parser("config", help="Show the effective configuration or an example file.")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_commands.add_parser("show", help="The effective configuration as TOML (secrets masked).").set_defaults(
        handler=_cmd_config_show)
    config_commands.add_parser("example", help="A commented example configuration file.").set_defaults(
        handler=_cmd_config_example, needs_settings=False)

    db = commands.add_parser("db", help="Database migrations.")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_commands.add_parser("upgrade", help="Apply migrations up to REVISION (default: head).")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=_cmd_db_upgrade)
    downgrade = db_commands.add_parser("downgrade", help="Revert migrations down to REVISION ('base': all).")
    downgrade.add_argument("revision")
    downgrade.set_defaults(handler=_cmd_db_downgrade)
    db_commands.add_parser("current", help="The database's revision.").set_defaults(handler=_cmd_db_current)

    heights = commands.add_parser("heights", help="The patient-height registry (heights for SMI).")
    heights_commands = heights.add_subparsers(dest="heights_command", required=True, metavar="ACTION")
    heights_import = heights_commands.add_parser(
        "import", help="Import a CSV with columns patient_id, height_m (or height_cm) and optional measured_on.")
    heights_import.add_argument("file", type=Path)
    heights_import.set_defaults(handler=_cmd_heights_import)

    phantom = commands.add_parser("phantom", help="Write a synthetic lower-extremity CT with exact ground truth.")
    _add_phantom_options(phantom)
    phantom.set_defaults(handler=_cmd_phantom, needs_settings=False)
    phantom_commands = phantom.add_subparsers(dest="phantom_command", required=False, metavar="{cohort,crop}")
    cohort = phantom_commands.add_parser(
        "cohort", help="A synthetic validation cohort: subjects, ground-truth masses and SYNTHETIC DXA values.")
    cohort.add_argument("--n", type=int, default=60, help="Number of subjects.")
    cohort.add_argument("--out", type=Path, required=True)
    cohort.add_argument("--seed", type=int, default=0)
    cohort.add_argument("--sex", choices=("F", "M", "both"), default="F")
    cohort.add_argument("--with-ct", action="store_true", help="Also write each subject's CT series (small matrix).")
    cohort.add_argument("--matrix", type=int, default=128, help="Matrix of the CT series with --with-ct.")
    cohort.add_argument("--slice-mm", type=float, default=5.0, help="Slice spacing of the CT series with --with-ct.")
    cohort.add_argument("--no-progress", action="store_true", help="No progress bar.")
    cohort.set_defaults(handler=_cmd_phantom_cohort, needs_settings=False)
    crop = phantom_commands.add_parser(
        "crop", help="Cut a generated phantom below (or above) the femoral head top, with its ground truth redone.")
    crop.add_argument("source", type=Path, help="Folder of a phantom written by 'sarcoscreen phantom'.")
    crop.add_argument("--out", type=Path, required=True, help="Folder for the cut series and its ground truth.")
    crop.add_argument("--end-below-head-top", type=float, required=True, metavar="MM",
                      help="Keep the slices from the head end of the scan down to MM below the top of the femoral "
                           "head (negative: above it).")
    crop.set_defaults(handler=_cmd_phantom_crop, needs_settings=False)

    inspect = commands.add_parser("inspect", help="Load a CT series and describe it (geometry, HU, warnings).")
    inspect.add_argument("series", type=Path, help="Folder (or file) of one DICOM CT series.")
    inspect.add_argument("--series-uid", help="The SeriesInstanceUID to load when the folder holds several image "
                         "series (non-image objects such as an RT Structure Set or an SR are set aside anyway).")
    inspect.set_defaults(handler=_cmd_inspect, needs_settings=False)

    analyze = commands.add_parser(
        "analyze", help="Segment and measure one CT series: measurements.json/.csv, overlay.png and a table.")
    analyze.add_argument("series", type=Path, help="Folder (or file) of one DICOM CT series.")
    analyze.add_argument("--series-uid", help="The SeriesInstanceUID to analyse when the folder holds several image "
                         "series (non-image objects such as an RT Structure Set or an SR are set aside anyway).")
    analyze.add_argument("--out", type=Path, required=True, help="Folder for the result files.")
    analyze.add_argument("--engine", choices=("threshold", "bayesian-unet"), help="Override engine.name.")
    analyze.add_argument("--labels", type=Path, metavar="NIFTI",
                         help="Measure this label map (catalogue label values, on the series' grid) instead of "
                              "segmenting.")
    analyze.add_argument("--height", type=float, metavar="M",
                         help="Body height in metres (overrides PatientSize and the registry).")
    analyze.add_argument("--dicom-out", type=Path, metavar="DIR",
                         help="Also write the DICOM-SEG, TID 1500 SR and key image into DIR ([outputs] settings).")
    analyze.add_argument("--no-progress", action="store_true", help="No progress bars.")
    analyze.set_defaults(handler=_cmd_analyze)

    send = commands.add_parser("send", help="C-STORE DICOM files or folders to a remote AE (a storage SCU).")
    send.add_argument("paths", type=Path, nargs="+", help="Files or folders (searched recursively).")
    send.add_argument("--to", required=True, metavar="AET@HOST:PORT|NAME",
                      help="The destination, e.g. PACS@10.0.0.5:104, or the name of a [[destinations]] entry.")
    send.add_argument("--calling-ae", default="SARCOSCREEN", help="Our AE title (default SARCOSCREEN).")
    send.add_argument("--timeout", type=float, default=30.0, help="Network timeout in seconds (default 30).")
    send.add_argument("--tls", action="store_true", help="Use TLS (system CAs unless --tls-ca is given).")
    send.add_argument("--tls-ca", type=Path, metavar="PEM", help="CA bundle to verify the destination (implies --tls).")
    send.add_argument("--tls-cert", type=Path, metavar="PEM", help="Client certificate (implies --tls).")
    send.add_argument("--tls-key", type=Path, metavar="PEM", help="Private key of the client certificate.")
    send.add_argument("--tls-no-verify-host", action="store_true",
                      help="Do not check that the certificate names the host (the CA is still checked).")
    send.set_defaults(handler=_cmd_send, needs_settings=False)

    serve = commands.add_parser(
        "serve", help="The DICOM node without workers: Storage SCP, series watcher and sender (until SIGTERM).")
    serve.set_defaults(handler=_cmd_serve)
    worker = commands.add_parser("worker", help="Process queued jobs: load, segment, measure, write SEG/SR, queue "
                                 "the deliveries (until SIGTERM).")
    worker.add_argument("--concurrency", type=int, metavar="N", help="Worker processes (default worker.concurrency).")
    worker.set_defaults(handler=_cmd_worker)
    run = commands.add_parser("run", help="Everything in one: serve plus worker processes (the embedded default).")
    run.add_argument("--concurrency", type=int, metavar="N", help="Worker processes (default worker.concurrency).")
    run.set_defaults(handler=_cmd_run)

    results = commands.add_parser("results", help="Results per series for QA (table, CSV or JSON).")
    results.add_argument("--since", metavar="WHEN", help="2026-11-01, 2026-11-01T08:00 or a duration: 7d, 12h, 30m.")
    results.add_argument("--flagged", action="store_true", help="Only series with a group below its cut-off.")
    results.add_argument("--qa", action="store_true",
                         help="Only series with a QA flag: a muscle the engine did not find where the scan holds it "
                              "(a group 'not found'), or a structure above the uncertainty threshold.")
    results.add_argument("--status", choices=("receiving", "stable", "queued", "skipped", "processed", "failed"),
                         help="Only series in this state.")
    results.add_argument("--patient", metavar="ID", help="Only this PatientID.")
    results.add_argument("--limit", type=int, help="At most this many series (newest first).")
    results.add_argument("--format", choices=("table", "csv", "json"), default="table")
    results.set_defaults(handler=_cmd_results)

    jobs = commands.add_parser("jobs", help="The queue and the outbox: jobs, deliveries per destination; retry or "
                               "cancel a job.")
    jobs.add_argument("--status", choices=("queued", "running", "done", "failed", "cancelled"))
    jobs.add_argument("--limit", type=int, default=50, help="At most this many jobs (newest first; default 50).")
    jobs.add_argument("--format", choices=("table", "json"), default="table")
    jobs.set_defaults(handler=_cmd_jobs)
    jobs_actions = jobs.add_subparsers(dest="jobs_action", required=False, metavar="retry|cancel")
    jobs_retry = jobs_actions.add_parser("retry", help="Queue a failed/cancelled job again, or resend a done job's "
                                         "unsent outputs.")
    jobs_retry.add_argument("job_id", type=int)
    jobs_retry.set_defaults(handler=_cmd_jobs)
    jobs_cancel = jobs_actions.add_parser("cancel", help="Cancel a queued or running job and its unsent deliveries.")
    jobs_cancel.add_argument("job_id", type=int)
    jobs_cancel.set_defaults(handler=_cmd_jobs)

    purge = commands.add_parser(
        "purge", help="Delete spool and output files whose retention period ended (storage.retention_days, "
        "storage.outputs_retention_days); 'serve' and 'run' do it every storage.retention_check_s.")
    purge.add_argument("--dry-run", action="store_true", help="Only say what would be deleted.")
    purge.set_defaults(handler=_cmd_purge)

    demo = commands.add_parser(
        "demo", help="The main job on embedded defaults: a phantom hip CT sent to a node started for it, analysed, "
        "and its SEG and SR delivered to a destination (Orthanc when installed).")
    demo.add_argument("--out", type=Path, default=Path("demo-output"), help="Folder for everything the demo makes.")
    demo.add_argument("--matrix", type=int, default=256, help="Rows and columns of the phantom's slices.")
    demo.add_argument("--slice-mm", type=float, default=2.0, help="Slice spacing of the phantom in mm.")
    demo.add_argument("--seed", type=int, default=0, help="Seed of the phantom's noise.")
    demo.add_argument("--no-progress", action="store_true", help="No progress bars.")
    demo.add_argument("--destination", choices=("auto", "orthanc", "builtin"), default="auto",
                      help="Where the node sends SEG/SR: Orthanc (auto: when installed) or a built-in storage SCP.")
    demo.add_argument("--timeout", type=float, help="Give up waiting after this many seconds (default 600; 3600 with "
                      "--engine bayesian-unet).")
    demo.add_argument("--engine", choices=("threshold", "bayesian-unet"), default="threshold",
                      help="The engine the node runs (default threshold). bayesian-unet needs the 'unet' extra and "
                           "is slow on a CPU: --mc-samples 1 and --slice-mm 5 make a quick run.")
    demo.add_argument("--bundle", type=Path, metavar="PATH",
                      help="bayesian-unet: the model bundle (default: engine.bundle_path when configured, else the "
                           "bundle shipped with sarcoscreen).")
    demo.add_argument("--mc-samples", type=int, metavar="T",
                      help="bayesian-unet: Monte-Carlo dropout samples per slice (default: the bundle's).")
    demo.set_defaults(handler=_cmd_demo)

    bundle = commands.add_parser(
        "bundle", help="Describe a Bayesian U-Net model bundle (weights verified): model, structures, training data "
                       "with provenance, licences and intended use; needs the 'unet' extra.")
    bundle.add_argument("path", nargs="?", type=Path, metavar="PATH",
                        help="Bundle folder or archive (default: engine.bundle_path when set, else the bundle "
                             "shipped with sarcoscreen).")
    bundle.set_defaults(handler=_cmd_bundle)

    from sarcoscreen.node.train_command import add_evaluate_arguments, add_train_arguments

    train = commands.add_parser(
        "train", help="Train a Bayesian U-Net model bundle on labelled CT (NIfTI pairs, DICOM + SEG); needs the "
                      "'unet' extra.")
    add_train_arguments(train)
    train.set_defaults(handler=_cmd_train, needs_settings=False)
    evaluate = commands.add_parser(
        "evaluate", help="Dice and volume error per structure of a model bundle on labelled CT.")
    add_evaluate_arguments(evaluate)
    evaluate.set_defaults(handler=_cmd_evaluate, needs_settings=False)

    from sarcoscreen.node.calibrate_command import add_calibrate_parser
    from sarcoscreen.node.study_command import add_study_parser

    add_study_parser(commands, _cmd_study)
    add_calibrate_parser(commands, _cmd_calibrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings: Settings | None = None
    try:
        if getattr(args, "needs_settings", True):
            overrides = {"logging": {"level": args.log_level}} if args.log_level else None
            settings = load_settings(args.config, overrides=overrides)
            configure_logging(settings.logging.level, settings.logging.file, modes=settings.storage.modes)
        else:
            configure_logging(args.log_level or "INFO")
        return int(args.handler(args, settings))
    except ConfigError as exc:
        print(f"sarcoscreen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as exc:
        print(f"sarcoscreen: {exc}", file=sys.stderr)
        return EXIT_FAILED

    except KeyboardInterrupt:
        print("sarcoscreen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
