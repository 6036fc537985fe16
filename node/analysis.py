"""The analysis pipeline: one CT series in, measurements, result files and DICOM outputs out.

The one path every analysis takes - ``sarcoscreen analyze``, the node's worker (and so the demo, which runs a
worker):

1. **load** the series (`inference.series_loader.load_series`, at most ``worker.max_volume_mb``);
2. **segment** it with the engine (`engine_from`: created by the caller, a worker keeps one per process);
3. **cover**: when ``routing.require_gluteal_region`` is on and the segmentation holds no gluteal muscle, the
   series does not reach the region (`inference.measure.gluteal_region_missed`): the outcome is a skip, nothing
   is measured or written;
4. **measure** every structure and group and screen against the site calibration (`inference.measure.measure`),
   with the height chosen explicit > DICOM PatientSize > registry (`inference.height.choose_height`);
5. **files**: ``measurements.json``, ``measurements.csv`` and ``overlay.png`` (`reports.result_files`);
6. **DICOM outputs** (when asked for): the DICOM-SEG, TID 1500 SR and key image (`reports.dicom_outputs`), each
   with the UIDs the writer gave it (`reports.dicom_outputs.WrittenObject`).

Everything the settings decide is read once into `AnalysisOptions` (`AnalysisOptions.from_settings`). A problem
of the input - the loader refuses the series, the engine refuses its images - raises `AnalysisInputError`: the
same input fails the same way every time. DICOM outputs that cannot reference their source are not an exception:
the outcome keeps the measurements and files and says why in `AnalysisOutcome.dicom_error`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sarcoscreen.inference.calibration import Calibration, CalibrationError, load_calibration
from sarcoscreen.inference.density import DensityRule
from sarcoscreen.inference.engines import Engine, EngineError, create_engine
from sarcoscreen.inference.engines.base import Progress, Segmentation
from sarcoscreen.inference.error_text import error_text
from sarcoscreen.inference.file_modes import FileModes
from sarcoscreen.inference.height import Height, ImplausibleHeightError, choose_height, validate_height_m
from sarcoscreen.inference.measure import MeasurementReport, gluteal_region_missed, measure
from sarcoscreen.inference.series_errors import SeriesLoadError, VolumeTooLargeError
from sarcoscreen.inference.series_loader import load_series
from sarcoscreen.inference.sides import SideRule
from sarcoscreen.inference.volume import Volume
from sarcoscreen.node.config import Settings
from sarcoscreen.reports.dicom_outputs import DicomOutputError, DicomOutputOptions, DicomOutputs, write_dicom_outputs
from sarcoscreen.reports.result_files import write_result_files

__all__ = [
    "AnalysisError",
    "AnalysisInputError",
    "AnalysisOptions",
    "AnalysisOutcome",
    "analyze_series",
    "density_rule_from",
    "dicom_options_from",
    "engine_from",
    "run_analysis",
    "settings_digest",
]


class AnalysisError(Exception):
    """The series could not be analysed; the message says why in words."""


class AnalysisInputError(AnalysisError):
    """A problem of the input (the series cannot be loaded, the engine refuses its images): the same input fails
    the same way every time, so a job is not retried."""


def density_rule_from(settings: Settings) -> DensityRule:
    """The density rule of the ``[measurement]`` settings, with the engine's muscle HU window."""
    m = settings.measurement
    return DensityRule(m.density, m.density_g_per_cm3, m.exclude_outside_window,
                       (settings.engine.muscle_hu_min, settings.engine.muscle_hu_max))


def engine_from(settings: Settings, name: str | None = None, labels: Path | None = None) -> Engine:
    """The segmentation engine to run: `labels` (a label map to measure) wins, then `name`, then ``engine.name``.

    Raises `EngineError` when it cannot be created (e.g. a model bundle that does not verify).
    """
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


@dataclass(frozen=True)
class AnalysisOptions:
    """What the settings decide about an analysis, read once (`from_settings`)."""

    density_rule: DensityRule
    side_rule: SideRule
    calibration: Calibration | None
    dicom: DicomOutputOptions
    settings_digest: str
    """`settings_digest`: part of the output UIDs, and recorded with a job's results."""
    max_volume_bytes: int
    require_gluteal_region: bool
    modes: FileModes

    @classmethod
    def from_settings(cls, settings: Settings) -> AnalysisOptions:
        """The options of `settings`; `AnalysisError` when the calibration file cannot be used."""
        path = settings.measurement.calibration_file
        try:
            calibration = None if path is None else load_calibration(path)
        except CalibrationError as exc:
            raise AnalysisError(f"the calibration file cannot be used: {error_text(exc)}") from None
        return cls(density_rule=density_rule_from(settings), side_rule=settings.measurement.side_rule,
                   calibration=calibration, dicom=dicom_options_from(settings),
                   settings_digest=settings_digest(settings, calibration),
                   max_volume_bytes=settings.worker.max_volume_mb << 20,
                   require_gluteal_region=settings.routing.require_gluteal_region, modes=settings.storage.modes)


@dataclass(frozen=True)
class AnalysisOutcome:
    """What one analysis produced: measured (`report`) or skipped (`skip_reason`)."""

    volume: Volume
    segmentation: Segmentation
    report: MeasurementReport | None
    """``None`` when the series was skipped (`skip_reason`)."""
    skip_reason: str | None = None
    files: dict[str, Path] = field(default_factory=dict)
    """Result files by kind: ``json``, ``csv``, ``overlay`` and, when written, ``seg``, ``sr``, ``key_image``."""
    dicom: DicomOutputs | None = None
    """The DICOM outputs with their UIDs (``None`` when not asked for, or not written: `dicom_error`)."""
    dicom_error: str | None = None
    """Why the DICOM outputs asked for were not written (the source cannot be referenced)."""
    steps: dict[str, float] = field(default_factory=dict)
    """Seconds per step, in order."""


class _StepClock:
    """Seconds per pipeline step; `check` (e.g. a worker's lease) runs after each."""

    def __init__(self, check: Callable[[], None]) -> None:
        self.steps: dict[str, float] = {}
        self.check = check
        self._last = time.monotonic()

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        self.steps[name] = now - self._last
        self._last = now
        self.check()


def _no_check() -> None:
    return None


def run_analysis(
    source: Path | Sequence[Path],
    segmenter: Engine,
    options: AnalysisOptions,
    out_dir: Path,
    *,
    dicom_out: Path | None = None,
    explicit_height_m: float | None = None,
    registry_height_m: float | None = None,
    series_uid: str | None = None,
    progress: Progress | None = None,
    check: Callable[[], None] = _no_check,
) -> AnalysisOutcome:
    """Analyse the series of `source` (a folder, or the series' files) with `segmenter`.

    Writes the result files into `out_dir` and, when `dicom_out` is given, the DICOM outputs there (it may be
    `out_dir`). `explicit_height_m` (checked by the caller) wins over DICOM PatientSize, which wins over
    `registry_height_m`. `series_uid` chooses a series in a folder that holds several; `progress` receives
    ``(step, done, total)``; `check` runs after every step (a worker raises there once its lease is lost).

    Raises `AnalysisInputError` when the series cannot be loaded or the engine refuses it. Error texts are
    scrubbed of anything that could be a DICOM value (`inference.error_text`): they are logged and stored.
    """
    clock = _StepClock(check)
    loading = None if progress is None else (lambda done, total: progress("loading", done, total))
    try:
        volume = load_series(source, series_instance_uid=series_uid, max_volume_bytes=options.max_volume_bytes,
                             progress=loading)
    except SeriesLoadError as exc:
        limit = " (worker.max_volume_mb)" if isinstance(exc, VolumeTooLargeError) else ""
        raise AnalysisInputError(f"the series cannot be loaded: {error_text(exc)}{limit}") from None
    clock("load")
    try:
        segmentation = segmenter.segment(volume, progress=progress)
    except EngineError as exc:
        raise AnalysisInputError(f"engine {segmenter.name} {segmenter.version}: {error_text(exc)}") from None
    clock("engine")
    if options.require_gluteal_region:
        reason = gluteal_region_missed(segmentation)
        if reason is not None:
            return AnalysisOutcome(volume, segmentation, None, skip_reason=reason, steps=clock.steps)
    height: Height = choose_height(explicit_height_m, volume.info.patient_size_m, registry_height_m)
    report = measure(volume, segmentation, options.density_rule, height, calibration=options.calibration,
                     side_rule=options.side_rule)
    clock("measure")
    written = write_result_files(out_dir, volume, segmentation, report, options.calibration, modes=options.modes)
    files = dict(written.files)
    clock("files")
    if dicom_out is None:
        return AnalysisOutcome(volume, segmentation, report, files=files, steps=clock.steps)
    try:
        outputs = write_dicom_outputs(source, volume, segmentation, report, dicom_out,
                                      settings_digest=options.settings_digest, options=options.dicom,
                                      picture=written.picture, modes=options.modes)
    except DicomOutputError as exc:
        return AnalysisOutcome(volume, segmentation, report, files=files, dicom_error=error_text(exc),
                               steps=clock.steps)
    files.update({obj.kind: obj.path for obj in outputs.objects})
    clock("dicom outputs")
    return AnalysisOutcome(volume, segmentation, report, files=files, dicom=outputs, steps=clock.steps)


def analyze_series(
    series: Path,
    out_dir: Path,
    settings: Settings,
    *,
    engine_name: str | None = None,
    labels: Path | None = None,
    height_m: float | None = None,
    series_uid: str | None = None,
    dicom_out: Path | None = None,
    progress: Progress | None = None,
) -> AnalysisOutcome:
    """`run_analysis` of one series folder with `settings` (``sarcoscreen analyze``): the engine of `engine_name`
    or the configuration (or the label map `labels` measured as it is), the height `height_m` if given, else
    PatientSize, else the registry entry of the folder's PatientID (`node.height_registry`).

    Raises `AnalysisError` when the height, the calibration, the engine or the series cannot be used.
    """
    if height_m is not None:
        try:
            validate_height_m(height_m, "--height")
        except ImplausibleHeightError as exc:
            raise AnalysisError(str(exc)) from None
    from sarcoscreen.node.height_registry import registry_height_for_series

    options = AnalysisOptions.from_settings(settings)
    try:
        segmenter = engine_from(settings, engine_name, labels)
    except EngineError as exc:
        raise AnalysisError(error_text(exc)) from None
    registry_m = None if height_m is not None else registry_height_for_series(settings, series)
    return run_analysis(series, segmenter, options, out_dir, dicom_out=dicom_out, explicit_height_m=height_m,
                        registry_height_m=registry_m, series_uid=series_uid, progress=progress)
