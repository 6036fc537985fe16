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
"""

from __future__ import annotations

import argparse
import sys

from sarcoscreen.inference.volume import Volume
from sarcoscreen.node.analysis import AnalysisError, analyze_series
from sarcoscreen.node.config import Settings
from sarcoscreen.node.progress_bars import StepBars, wanted
from sarcoscreen.reports.results_table import results_table

__all__ = ["loaded_lines", "run_analyze"]


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


def run_analyze(args: argparse.Namespace, settings: Settings) -> int:
    bars = StepBars(wanted(args.no_progress))
    try:
        outcome = analyze_series(args.series, args.out, settings, engine_name=args.engine, labels=args.labels,
                                 height_m=args.height, series_uid=args.series_uid, dicom_out=args.dicom_out,
                                 progress=bars)
    except AnalysisError as exc:
        print(f"sarcoscreen: cannot analyse {args.series}: {exc}", file=sys.stderr)
        return 1
    finally:
        bars.close()
    for line in loaded_lines(outcome.volume):
        print(line)
    if outcome.report is None:
        print(f"sarcoscreen: {args.series} not measured: {outcome.skip_reason} (routing.require_gluteal_region)",
              file=sys.stderr)
        return 1
    print()
    print(results_table(outcome.report))
    print()
    for kind, path in outcome.files.items():
        print(f"{kind:9s} {path}")
    if outcome.dicom is not None:
        for kind, reason in outcome.dicom.omitted:
            print(f"{kind:9s} not written: {reason}")
    if outcome.dicom_error is not None:
        print(f"sarcoscreen: DICOM outputs not written: {outcome.dicom_error}", file=sys.stderr)
        return 1
    return 0
