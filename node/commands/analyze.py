"""``sarcoscreen analyze SERIES_DIR --out DIR``: one CT series in, measurements and an overlay out.

The node's analysis pipeline (`sarcoscreen.node.analysis`) without the network: load the series, segment it with
the configured engine, measure, screen against the site calibration (if configured), and write
``measurements.json``, ``measurements.csv`` and ``overlay.png``; print the series analysed, what the loader set
aside or corrected, and the results table. ``SERIES_DIR`` may be a case folder: non-image objects in it (an RT
Structure Set, SRs, segmentations, ...) are set aside and listed; several image series are refused and listed,
``--series-uid`` chooses one (`sarcoscreen.inference.series_selection`). With ``--dicom-out DIR`` also the
DICOM-SEG, TID 1500 SR and key image (`sarcoscreen.reports.dicom_outputs`, configured by ``[outputs]`` and
``[uids]``). A series that does not reach the gluteal region is not measured when ``routing.require_gluteal_region``
is on, as in the node.

A series that cannot be analysed or measured, or DICOM outputs that were asked for and not written, end with one
line on stderr and exit status 1 (the result files that were written are listed first).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from sarcoscreen.node.commands.command import SubParsers, loaded
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import Settings

if TYPE_CHECKING:
    from sarcoscreen.inference.volume import Volume

__all__ = ["add_parser", "loaded_lines", "run"]


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser(
        "analyze", help="Segment and measure one CT series: measurements.json/.csv, overlay.png and a table.")
    parser.add_argument("series", type=Path, help="Folder (or file) of one DICOM CT series.")
    parser.add_argument("--series-uid", help="The SeriesInstanceUID to analyse when the folder holds several image "
                        "series (non-image objects such as an RT Structure Set or an SR are set aside anyway).")
    parser.add_argument("--out", type=Path, required=True, help="Folder for the result files.")
    parser.add_argument("--engine", choices=("threshold", "bayesian-unet"), help="Override engine.name.")
    parser.add_argument("--labels", type=Path, metavar="NIFTI",
                        help="Measure this label map (catalogue label values, on the series' grid) instead of "
                             "segmenting.")
    parser.add_argument("--height", type=float, metavar="M",
                        help="Body height in metres (overrides PatientSize and the registry).")
    parser.add_argument("--dicom-out", type=Path, metavar="DIR",
                        help="Also write the DICOM-SEG, TID 1500 SR and key image into DIR ([outputs] settings).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bars.")
    parser.set_defaults(run=run, needs_settings=True)


def loaded_lines(volume: Volume) -> list[str]:
    """Which series was analysed and what the loader set aside or corrected (`Volume.warnings`), one line each.

    No patient data: the series is named by its SeriesInstanceUID, what was set aside by SOP class and series UID.
    """
    info = volume.info
    slices, rows, columns = volume.shape
    lines = [f"{'series':9s} {info.series_instance_uid or '(no SeriesInstanceUID)'}: "
             f"{info.modality or 'no Modality'}, {slices} slices of {rows} x {columns}"]
    lines += [f"{'warning':9s} {warning}" for warning in volume.warnings]
    return lines


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.node.analysis import AnalysisError, analyze_series
    from sarcoscreen.node.progress_bars import StepBars, wanted
    from sarcoscreen.reports.results_table import results_table

    bars = StepBars(wanted(args.no_progress))
    try:
        outcome = analyze_series(args.series, args.out, loaded(settings), engine_name=args.engine,
                                 labels=args.labels, height_m=args.height, series_uid=args.series_uid,
                                 dicom_out=args.dicom_out, progress=bars)
    except AnalysisError as exc:
        raise UserError(f"cannot analyse {args.series}: {exc}", ExitCode.FAILED) from None
    finally:
        bars.close()
    for line in loaded_lines(outcome.volume):
        print(line)
    if outcome.report is None:
        raise UserError(f"{args.series} not measured: {outcome.skip_reason} (routing.require_gluteal_region)",
                        ExitCode.FAILED)
    print()
    print(results_table(outcome.report))
    print()
    for kind, path in outcome.files.items():
        print(f"{kind:9s} {path}")
    if outcome.dicom is not None:
        for kind, reason in outcome.dicom.omitted:
            print(f"{kind:9s} not written: {reason}")
    if outcome.dicom_error is not None:
        raise UserError(f"DICOM outputs not written: {outcome.dicom_error}", ExitCode.FAILED)
    return ExitCode.OK
