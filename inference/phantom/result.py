"""What generating or cutting a phantom returns, and the software version the files record."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = ["PhantomResult", "software_version"]


def software_version() -> str:
    """sarcoscreen's version (SoftwareVersions, ground_truth.json), or ``0+unknown`` when not installed."""
    try:
        return version("sarcoscreen")
    except PackageNotFoundError:
        return "0+unknown"


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
