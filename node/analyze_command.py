"""``sarcoscreen analyze SERIES_DIR --out DIR``: one CT series in, measurements and an overlay out.

The same pipeline the worker runs, without the network: load the series, segment it with the configured engine,
measure, screen against the site calibration (if configured), and write ``measurements.json``,
``measurements.csv`` and ``overlay.png``; print the series analysed, what the loader set aside or corrected, and
the results table. ``SERIES_DIR`` may be a case folder: non-image objects in it (an RT Structure Set, SRs,
segmentations, ...) are set aside and listed; several image series are refused and listed, ``--series-uid``
chooses one (`sarcoscreen.inference.series_selection`). With ``--dicom-out DIR`` also the DICOM-SEG,
TID 1500 SR and key image (`sarcoscreen.reports.dicom_outputs`, configured by ``[outputs]`` and ``[uids]``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sarcoscreen.inference.calibration import Calibration, CalibrationError, load_calibration
from sarcoscreen.inference.density import DensityRule
from sarcoscreen.inference.engines import Engine, EngineError, create_engine
from sarcoscreen.inference.engines.base import Segmentation
from sarcoscreen.inference.height import Height, ImplausibleHeightError, choose_height, validate_height_m
from sarcoscreen.inference.measure import MeasurementReport, measure
from sarcoscreen.inference.series_loader import SeriesLoadError, load_series
from sarcoscreen.inference.volume import Volume
from sarcoscreen.node.config import Settings
from sarcoscreen.node.height_registry import registry_height_for_series
from sarcoscreen.node.progress_bars import StepBars, wanted
from sarcoscreen.reports.result_files import write_result_files
from sarcoscreen.reports.results_table import results_table

if TYPE_CHECKING:
    from sarcoscreen.reports.dicom_outputs import DicomOutputOptions, DicomOutputs

__all__ = [
    "AnalysisError",
    "AnalysisResult",
    "analyze_series",
    "density_rule_from",
    "dicom_options_from",
    "engine_from",
    "loaded_lines",
    "run_analyze",
    "settings_digest",
]

logger = logging.getLogger(__name__)


class AnalysisError(Exception):
    """The series could not be analysed; the message says why."""


@dataclass(frozen=True)
class AnalysisResult:
    volume: Volume
    segmentation: Segmentation
    report: MeasurementReport
    files: dict[str, Path]
    dicom: DicomOutputs | None = None
    dicom_error: str | None = None
    """Why the DICOM outputs asked for were not written (the source cannot be referenced)."""


def density_rule_from(settings: Settings) -> DensityRule:
    m = settings.measurement
    return DensityRule(m.density, m.density_g_per_cm3, m.exclude_outside_window,
                       (settings.engine.muscle_hu_min, settings.engine.muscle_hu_max))


def engine_from(settings: Settings, name: str | None = None, labels: Path | None = None) -> Engine:
    """The engine to run: `labels` (a label map to measure) wins, then `name`, then the configuration."""
    engine = settings.engine
    if labels is not None:
        return create_engine("labelmap", path=labels)
    chosen = name or engine.name
    options: dict[str, object] = {"hu_window": (engine.muscle_hu_min, engine.muscle_hu_max)}
    if chosen == "bayesian-unet":
        options = {"bundle_path": engine.bundle_path, "device": engine.device, "mc_samples": engine.mc_samples,
                   "uncertainty": engine.uncertainty, "uncertainty_threshold": engine.uncertainty_threshold,
                   "batch_images": engine.batch_images, "seed": None if engine.seed < 0 else engine.seed,
                   "mixed_precision": engine.mixed_precision}
    return create_engine(chosen, **options)


def dicom_options_from(settings: Settings) -> DicomOutputOptions:
    """The DICOM output options of the ``[outputs]`` and ``[uids]`` settings."""
    from sarcoscreen.reports.dicom_outputs import DicomOutputOptions
    from sarcoscreen.reports.key_image import KeyImageKind, KeyImageOptions
    from sarcoscreen.reports.seg import SegCompression, SegOptions, SegType

    outputs = settings.outputs
    return DicomOutputOptions(
        uid_root=settings.uids.root,
        seg=SegOptions(SegType(outputs.seg_type), SegCompression(outputs.seg_compression),
                       outputs.seg_omit_empty_frames, device_serial_number=settings.network.ae_title),
        key_image=KeyImageOptions(KeyImageKind(outputs.key_image), outputs.burn_in_patient_name),
    )


def settings_digest(settings: Settings, calibration: Calibration | None) -> str:
    """What of the settings shapes the results, as a short digest (part of the output UIDs): the engine,
    measurement and output settings and the calibration's content; not paths, devices or the height."""
    data = {
        "engine": settings.engine.model_dump(mode="json", exclude={"bundle_path", "device"}),
        "measurement": settings.measurement.model_dump(mode="json", exclude={"calibration_file"}),
        "calibration": calibration.sha256 if calibration else None,
        "outputs": settings.outputs.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def calibration_from(settings: Settings) -> Calibration | None:
    path = settings.measurement.calibration_file
    return None if path is None else load_calibration(path)


def analyze_series(
    series: Path,
    out_dir: Path,
    settings: Settings,
    *,
    engine_name: str | None = None,
    labels: Path | None = None,
    height_m: float | None = None,
    series_uid: str | None = None,
    progress: bool = False,
    dicom_out: Path | None = None,
) -> AnalysisResult:
    """Run the whole pipeline on one series folder and write the result files to `out_dir` (and the DICOM
    outputs to `dicom_out` when given)."""
    if height_m is not None:
        try:
            validate_height_m(height_m, "--height")
        except ImplausibleHeightError as exc:
            raise AnalysisError(str(exc)) from None
    bar = StepBars(progress)
    try:
        calibration = calibration_from(settings)
        volume = load_series(series, series_instance_uid=series_uid,
                             max_volume_bytes=settings.worker.max_volume_mb << 20,
                             progress=(lambda done, total: bar("loading", done, total)))
        engine = engine_from(settings, engine_name, labels)
        segmentation = engine.segment(volume, progress=bar)
    except (SeriesLoadError, EngineError, CalibrationError) as exc:
        raise AnalysisError(str(exc)) from None
    finally:
        bar.close()
    height: Height = choose_height(height_m, volume.info.patient_size_m, registry_height_for_series(settings, series))
    report = measure(volume, segmentation, density_rule_from(settings), height, calibration=calibration,
                     side_rule=settings.measurement.side_rule)
    written = write_result_files(out_dir, volume, segmentation, report, calibration, modes=settings.storage.modes)
    files, picture = written.files, written.picture
    logger.info("analysed series %s with %s %s", volume.info.series_instance_uid or "(no UID)", engine.name,
                engine.version)
    if dicom_out is None:
        return AnalysisResult(volume, segmentation, report, files)
    from sarcoscreen.reports.dicom_outputs import DicomOutputError, write_dicom_outputs

    try:
        outputs = write_dicom_outputs(series, volume, segmentation, report, dicom_out,
                                      settings_digest=settings_digest(settings, calibration),
                                      options=dicom_options_from(settings), picture=picture,
                                      modes=settings.storage.modes)
    except DicomOutputError as exc:
        logger.warning("DICOM outputs not written: %s", exc)
        return AnalysisResult(volume, segmentation, report, files, dicom_error=str(exc))
    for kind, path in zip(("seg", "sr", "key_image"), (outputs.seg, outputs.sr, outputs.key_image), strict=True):
        if path is not None:
            files[kind] = path
    return AnalysisResult(volume, segmentation, report, files, dicom=outputs)


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
    try:
        result = analyze_series(args.series, args.out, settings, engine_name=args.engine, labels=args.labels,
                                height_m=args.height, series_uid=args.series_uid,
                                progress=wanted(args.no_progress), dicom_out=args.dicom_out)
    except AnalysisError as exc:
        print(f"sarcoscreen: cannot analyse {args.series}: {exc}")
        return 1
    for line in loaded_lines(result.volume):
        print(line)
    print()
    print(results_table(result.report))
    print()
    for kind, path in result.files.items():
        print(f"{kind:9s} {path}")
    if result.dicom is not None:
        for kind, reason in result.dicom.omitted:
            print(f"{kind:9s} not written: {reason}")
    if result.dicom_error is not None:
        print(f"sarcoscreen: DICOM outputs not written: {result.dicom_error}")
        return 1
    return 0
