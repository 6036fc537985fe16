"""Body height for the skeletal muscle index, and where it came from.

SMI = muscle mass / height^2 needs a height that can be trusted. DICOM PatientSize (0010,1020) is defined in
metres (PS3.3 C.7.2.2), but sites record centimetres, zero or guesses in it; a value outside a plausible adult
range is refused with the reason rather than used. Sources, in order of precedence: an explicit value (command
line), PatientSize from the images, the site's height registry (``sarcoscreen heights import``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["MAX_HEIGHT_M", "MIN_HEIGHT_M", "Height", "HeightSource", "ImplausibleHeightError", "choose_height",
           "validate_height_m"]

MIN_HEIGHT_M = 1.0
MAX_HEIGHT_M = 2.3


class ImplausibleHeightError(ValueError):
    """A height value that cannot be a body height in metres."""


class HeightSource(StrEnum):
    EXPLICIT = "explicit"
    DICOM = "dicom"
    REGISTRY = "registry"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Height:
    """The height used for SMI, or why there is none."""

    metres: float | None
    source: HeightSource
    note: str = ""
    """Why a candidate was refused, or why the height is unknown."""

    @property
    def known(self) -> bool:
        return self.metres is not None


def validate_height_m(value: float, what: str = "height") -> float:
    """Return `value` if it is a plausible height in metres, else raise `ImplausibleHeightError` saying why."""
    if math.isnan(value) or value <= 0:
        raise ImplausibleHeightError(f"{what} {value!r} is not a positive number")
    if 100.0 <= value <= 230.0:
        raise ImplausibleHeightError(f"{what} {value:g} looks like centimetres; it must be in metres")
    if not MIN_HEIGHT_M <= value <= MAX_HEIGHT_M:
        raise ImplausibleHeightError(
            f"{what} {value:g} m is outside the plausible range {MIN_HEIGHT_M}-{MAX_HEIGHT_M} m"
        )
    return float(value)


def choose_height(explicit_m: float | None, dicom_size_m: float | None, registry_m: float | None) -> Height:
    """Pick the first plausible height of explicit, DICOM PatientSize, registry; record refused candidates."""
    refused: list[str] = []
    for value, source, what in (
        (explicit_m, HeightSource.EXPLICIT, "the given height"),
        (dicom_size_m, HeightSource.DICOM, "PatientSize (0010,1020)"),
        (registry_m, HeightSource.REGISTRY, "the registry height"),
    ):
        if value is None:
            continue
        try:
            metres = validate_height_m(value, what)
        except ImplausibleHeightError as exc:
            refused.append(str(exc))
            continue
        return Height(metres, source, "; ".join(refused))
    reason = "; ".join(refused) if refused else "no PatientSize in the images and no registry entry"
    return Height(None, HeightSource.UNKNOWN, f"height unknown: {reason}")
