"""What generating or cutting a phantom returns, and the software version the files record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sarcoscreen.inference.version import software_version

__all__ = ["PhantomResult", "software_version"]


@dataclass(frozen=True)
class PhantomResult:
    """The files of one phantom series and its ground truth (as written to ``ground_truth.json``)."""

    out_dir: Path
    dicom_dir: Path
    labels_path: Path
    ground_truth_path: Path
    ground_truth: dict[str, Any]
    slices: int
    seconds: float
