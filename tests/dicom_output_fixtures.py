"""A crafted analysis for the DICOM output tests: a small CT series on disk, a per-muscle label map with known
content, engine uncertainty, and a measurement report screened against a calibration.

The label map (10 slices of 48 x 40) holds the three gluteal muscles on both sides, the right deep posterior
compartment (a private 99SARCO code whose catalogue meaning is longer than DICOM's 64 characters) and the left
femur; the right gluteus maximus has a gap (slice 4 empty) so that segments are discontinuous; no structure
touches the first or last slice, so every group is complete. The engine declares more structures than it labels
(the left deep posterior compartment stays empty).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ct_series_factory import CTSeries, write_ct_series

from sarcoscreen.inference.calibration import Calibration, Cutoff
from sarcoscreen.inference.catalogue import CATALOGUE, Group, Structure
from sarcoscreen.inference.density import DensityKind, DensityRule
from sarcoscreen.inference.engines.base import Landmark, Segmentation, StructureExtent
from sarcoscreen.inference.height import choose_height
from sarcoscreen.inference.measure import MeasurementReport, measure
from sarcoscreen.inference.series_loader import load_series
from sarcoscreen.inference.sides import SideRule
from sarcoscreen.inference.volume import Volume

__all__ = ["Crafted", "crafted_analysis", "crafted_labels", "declared_structures"]

SHAPE = (10, 48, 40)


@dataclass(frozen=True)
class Crafted:
    series: CTSeries
    volume: Volume
    segmentation: Segmentation
    report: MeasurementReport

    @property
    def folder(self) -> Path:
        return self.series.folder


def declared_structures() -> tuple[Structure, ...]:
    keys = [f"{m}_{side}" for m in ("gluteus_maximus", "gluteus_medius", "gluteus_minimus", "deep_posterior_leg",
                                     "femur") for side in ("right", "left")]
    return tuple(CATALOGUE.by_key(k) for k in keys)


def crafted_labels() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    by = CATALOGUE.by_key
    labels[2:8, 5:14, 3:12] = by("gluteus_maximus_right").label
    labels[4] = 0  # a gap: the right gluteus maximus is in two pieces along the scan
    labels[3:7, 5:14, 28:37] = by("gluteus_maximus_left").label
    labels[3:6, 16:20, 3:8] = by("gluteus_medius_right").label
    labels[3:6, 16:20, 30:35] = by("gluteus_medius_left").label
    labels[5:7, 22:25, 4:7] = by("gluteus_minimus_right").label
    labels[5:7, 22:25, 31:34] = by("gluteus_minimus_left").label
    labels[1:3, 30:40, 10:20] = by("deep_posterior_leg_right").label
    labels[6:9, 30:36, 22:30] = by("femur_left").label
    return labels


def crafted_analysis(folder: Path, calibration: Calibration | None = None, *, landmarks: tuple[Landmark, ...] = (),
                     extents: tuple[StructureExtent, ...] = (), **series_options: object) -> Crafted:
    """Write the series into `folder`, load it and measure the crafted label map on it (with the engine's
    `landmarks` and structure `extents`, if given)."""
    series = write_ct_series(folder, n_slices=SHAPE[0], rows=SHAPE[1], columns=SHAPE[2], **series_options)
    volume = load_series(folder)
    segmentation = Segmentation(
        labels=crafted_labels(), structures=declared_structures(), engine_name="bayesian-unet",
        engine_version="2.1", structure_uncertainty={"gluteus_maximus_right": 0.31, "gluteus_maximus_left": 0.05},
        uncertainty_threshold=0.2, uncertainty_measure="variance", notes=("crafted label map for tests",),
        landmarks=landmarks, extents=extents,
    )
    rule = DensityRule(DensityKind.CONSTANT, 1.04, False, (-29.0, 150.0))
    report = measure(volume, segmentation, rule, choose_height(1.62, None, None), calibration=calibration)
    return Crafted(series, volume, segmentation, report)


def calibration() -> Calibration:
    """Cut-offs for women: gluteal far above any crafted SMI (suspected), above-knee far below (not suspected),
    none for the whole group (not classified)."""
    return Calibration(
        name="test-site 2026", sha256="ab" * 32, side_rule=SideRule.MIN, primary_group=Group.GLUTEAL,
        cutoffs=(Cutoff(Group.GLUTEAL, "F", 50.0), Cutoff(Group.ABOVE_KNEE, "F", 1e-9)),
    )
