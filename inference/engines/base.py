"""The segmentation engine interface: ``segment(volume) -> Segmentation``.

An engine turns a `Volume` into a label map whose values are catalogue labels (0 = background). It declares
which catalogue structures it can produce, so measurement knows which group members it can expect; it may
add voxel-wise and structure-wise uncertainty (the Bayesian U-Net does) and the anatomical landmarks it found.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from sarcoscreen.inference.catalogue import Side, Structure
from sarcoscreen.inference.volume import Volume

__all__ = ["Engine", "EngineError", "Landmark", "Progress", "Segmentation"]

Progress = Callable[[str, int, int], None]
"""Progress callback: (step description, done, total)."""


class EngineError(Exception):
    """An engine could not segment a volume; the message says why in words."""


@dataclass(frozen=True)
class Landmark:
    """An anatomical landmark found along the scan."""

    name: str
    """e.g. ``iliac_crest``, ``acetabular_roof``, ``femoral_head``, ``lesser_trochanter``, ``knee_joint``,
    ``ankle``."""
    slice_index: int
    z_mm: float
    """Position along the slice normal (`Volume.slice_z_mm`)."""
    side: Side | None = None
    description: str = ""


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
    notes: tuple[str, ...] = ()
    """What the engine wants a reader to know (approximations, corrections, ...)."""

    def __post_init__(self) -> None:
        if self.labels.dtype != np.uint8:
            raise ValueError(f"labels must be uint8, got {self.labels.dtype}")
        if self.voxel_uncertainty is not None and self.voxel_uncertainty.shape != self.labels.shape:
            raise ValueError("voxel_uncertainty must have the shape of labels")

    def landmark(self, name: str) -> Landmark | None:
        return next((lm for lm in self.landmarks if lm.name == name), None)


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
