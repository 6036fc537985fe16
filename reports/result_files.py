"""The files of one analysis for people and scripts: ``measurements.json``, ``measurements.csv`` and
``overlay.png`` (axial panels with the masks and the results table), written into one folder.

`sarcoscreen analyze` and the node's worker both write them here, so both leave the same files: the folder and
the files created with `modes` (0700/0600 unless the node's ``storage`` settings say otherwise), each file written
atomically; a file that cannot be written (a full disk) raises `FileWriteError` and leaves no temporary file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from sarcoscreen.inference.calibration import Calibration
from sarcoscreen.inference.engines.base import Segmentation
from sarcoscreen.inference.file_modes import PRIVATE, FileModes
from sarcoscreen.inference.measure import MeasurementReport
from sarcoscreen.inference.volume import Volume
from sarcoscreen.reports.measurement_files import landmark_json, write_measurements_csv, write_measurements_json
from sarcoscreen.reports.overlay import render_overlay

__all__ = ["ResultFiles", "write_result_files"]


@dataclass(frozen=True)
class ResultFiles:
    files: dict[str, Path]
    """``json``, ``csv`` and ``overlay`` -> where each was written."""
    picture: Image.Image
    """The overlay (the key image is made from it)."""


def write_result_files(folder: Path, volume: Volume, segmentation: Segmentation, report: MeasurementReport,
                       calibration: Calibration | None, *, modes: FileModes = PRIVATE) -> ResultFiles:
    """Write the three files into `folder` (created when missing)."""
    modes.make_dirs(folder)
    files = {
        "json": write_measurements_json(report, folder / "measurements.json", modes=modes,
                                        study_instance_uid=volume.info.study_instance_uid,
                                        landmarks=[landmark_json(lm) for lm in segmentation.landmarks],
                                        calibration=calibration.describe() if calibration else None),
        "csv": write_measurements_csv(report, folder / "measurements.csv", modes=modes),
    }
    picture = render_overlay(volume, segmentation, report)
    with modes.atomic(folder / "overlay.png") as handle:
        picture.save(handle, format="PNG")
    files["overlay"] = folder / "overlay.png"
    return ResultFiles(files, picture)
