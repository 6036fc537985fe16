"""The segmentation engine interface: ``segment(volume) -> Segmentation``.

An engine turns a `Volume` into a label map whose values are catalogue labels (0 = background). It declares
which catalogue structures it can produce, so measurement knows which group members it can expect; it may
add voxel-wise and structure-wise uncertainty (the Bayesian U-Net does) and the anatomical landmarks it found.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

import numpy as np

from sarcoscreen.inference.catalogue import Side, Structure
from sarcoscreen.inference.volume import Volume

__all__ = ["UNCERTAINTY_MEASURES", "Certainty", "Engine", "EngineError", "ExtentStatus", "Landmark", "Progress",
           "Segmentation", "StructureExtent"]

Progress = Callable[[str, int, int], None]
"""Progress callback: (step description, done, total)."""

UNCERTAINTY_MEASURES = ("variance", "entropy")
"""The voxel uncertainties an engine may give (`Segmentation.uncertainty_measure`): the predictive variance of the
class probabilities over Monte-Carlo samples (summed over classes; no unit) and the predictive entropy of the mean
probability (natural logarithm: nats)."""


class EngineError(Exception):
    """An engine could not segment a volume; the message says why in words."""


class Certainty(StrEnum):
    """How sure an engine is of a landmark."""

    CONFIRMED = "confirmed"
    """Found, and an independent cue agrees (e.g. the femoral shaft below a femoral head found in the pelvis)."""
    FOUND = "found"
    """Found by its method, nothing disagrees, no independent cue to confirm it."""
    UNCERTAIN = "uncertain"
    """Estimated, or cues disagree. A structure or group bounded by an uncertain landmark is never complete."""


@dataclass(frozen=True)
class Landmark:
    """An anatomical landmark found along the scan."""

    name: str
    """e.g. ``iliac_crest``, ``acetabular_roof``, ``femoral_head``, ``greater_trochanter``,
    ``lesser_trochanter``, ``ischial_tuberosity``, ``pubic_symphysis``, ``knee_joint``, ``ankle``."""
    slice_index: int
    z_mm: float
    """Position along the slice normal (`Volume.slice_z_mm`)."""
    side: Side | None = None
    description: str = ""
    method: str = ""
    """How it was found, in words (e.g. "thickest bone ball lateral of the sacrum")."""
    certainty: Certainty = Certainty.FOUND
    note: str = ""
    """Why the engine is unsure, when it is."""


class ExtentStatus(StrEnum):
    IN_SCAN = "in scan"
    TRUNCATED = "truncated"
    UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class StructureExtent:
    """An engine's verdict on whether the scan holds a structure's whole extent along the body axis.

    Engines whose structures are bounded by landmarks (regions) know more than "the label touches the first or last
    slice": a region may end in the scan by construction while the anatomy it stands for goes on, or be bounded by
    a landmark the engine is unsure of. Measurement combines this with the touching rule.
    """

    key: str
    """Structure key (catalogue)."""
    status: ExtentStatus
    shortfall_mm: float | None = None
    """For ``TRUNCATED``: how far the structure's expected extent reaches beyond the scan (an estimate from the
    landmarks); ``None`` when unknown."""
    reason: str = ""


@dataclass(frozen=True, eq=False)
class Segmentation:
    """What an engine produced for one volume."""

    labels: np.ndarray
    """``uint8`` label map, same shape as the volume's ``hu``; values are catalogue labels, 0 = background."""
    structures: tuple[Structure, ...]
    """The structures this engine can produce (whether or not present in this volume)."""
    engine_name: str
    engine_version: str
    landmarks: tuple[Landmark, ...] = ()
    voxel_uncertainty: np.ndarray | None = None
    """Optional per-voxel predictive uncertainty, same shape as ``labels``."""
    structure_uncertainty: Mapping[str, float] = field(default_factory=dict)
    """Optional structure key -> mean voxel uncertainty inside the predicted structure."""
    uncertainty_threshold: float | None = None
    """Structures whose uncertainty exceeds this are flagged for QA."""
    uncertainty_measure: str | None = None
    """Which uncertainty the values are (`UNCERTAINTY_MEASURES`): ``variance``, the predictive variance of the
    class probabilities (no unit), or ``entropy``, the predictive entropy (nats). Required with uncertainties."""
    notes: tuple[str, ...] = ()
    """What the engine wants a reader to know (approximations, corrections, ...)."""
    extents: tuple[StructureExtent, ...] = ()
    """Optional per-structure extent verdicts (`StructureExtent`); structures without one are judged by whether
    they touch the first or last slice."""

    def __post_init__(self) -> None:
        if self.labels.dtype != np.uint8:
            raise ValueError(f"labels must be uint8, got {self.labels.dtype}")
        if self.voxel_uncertainty is not None and self.voxel_uncertainty.shape != self.labels.shape:
            raise ValueError("voxel_uncertainty must have the shape of labels")
        given = bool(self.structure_uncertainty) or self.voxel_uncertainty is not None
        if (given or self.uncertainty_measure is not None) and self.uncertainty_measure not in UNCERTAINTY_MEASURES:
            raise ValueError(f"uncertainty_measure {self.uncertainty_measure!r}: an engine giving uncertainties must "
                             f"say which measure they are, one of {', '.join(UNCERTAINTY_MEASURES)}")

    def landmark(self, name: str, side: Side | None = None) -> Landmark | None:
        return next((lm for lm in self.landmarks if lm.name == name and (side is None or lm.side is side)), None)

    def extent(self, key: str) -> StructureExtent | None:
        return next((e for e in self.extents if e.key == key), None)


@runtime_checkable
class Engine(Protocol):
    """A segmentation engine."""

    name: str
    version: str

    def structures(self) -> tuple[Structure, ...]:
        """The catalogue structures this engine can produce."""
        ...

    def segment(self, volume: Volume, progress: Progress | None = None) -> Segmentation:
        """Segment `volume`; raise `EngineError` when it cannot."""
        ...
