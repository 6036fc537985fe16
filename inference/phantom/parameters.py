"""Parameters of one digital phantom, with validation that names the offending value.

All lengths are in millimetres unless the name says otherwise; the body height is in metres (as DICOM
PatientSize, PS3.3 C.7.2.2). Every phantom is fully determined by its `PhantomParameters`: the same parameters
(seed included) give byte-identical pixel data, label maps and UIDs.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

__all__ = ["Fov", "MetalHip", "PatientPosition", "PhantomParameterError", "PhantomParameters"]


class PhantomParameterError(ValueError):
    """A phantom parameter is out of range; the message names it and the allowed range."""


class Fov(StrEnum):
    """Scan range along the body axis (see docs/phantom.md, "Fields of view")."""

    HIP = "hip"
    """~2 cm above the iliac crest to ~2 cm below the ankle joint: all three groups complete."""
    ABDOMEN = "abdomen"
    """~5 cm above the iliac crest to ~2 cm below the lesser trochanter (just below the ischial tuberosity), where an
    abdomen-pelvis CT ends: only the upper gluteal group complete; the gluteal group is truncated (gluteus maximus
    goes on ~8 cm below the ischial tuberosity)."""
    LEGS = "legs"
    """~7 cm above the knee joint to ~2 cm below the ankle joint: the lower-leg muscles complete."""


class MetalHip(StrEnum):
    """Total hip prostheses (stem, head, cup) with their streak artefacts: none, one side or both sides."""

    NONE = "none"
    LEFT = "left"
    RIGHT = "right"
    BOTH = "both"

    @property
    def sides(self) -> tuple[str, ...]:
        """The sides with a prosthesis (``"right"``, ``"left"``), right first."""
        return {"none": (), "left": ("left",), "right": ("right",), "both": ("right", "left")}[self.value]


class PatientPosition(StrEnum):
    """DICOM PatientPosition (0018,5100): head first or feet first, supine."""

    HFS = "HFS"
    FFS = "FFS"


@dataclass(frozen=True)
class PhantomParameters:
    """Everything that defines one phantom."""

    fov: Fov = Fov.HIP
    sex: str = "F"
    """``"F"`` or ``"M"``: men have larger muscles and bones, women a wider pelvis."""
    height_m: float = 1.58
    muscle_scale: float = 1.0
    """Linear scale of every muscle cross-section (1 = a typical older adult); cross-section area ~ scale^2."""
    fat_mm: float = 15.0
    """Subcutaneous fat thickness, measured along the skin normal."""
    slice_mm: float = 1.0
    """Slice spacing = slice thickness."""
    matrix: int = 512
    noise_hu: float = 12.0
    seed: int = 0
    fatty_infiltration: float = 0.0
    """0..1: more intramuscular fat specks and a lower attenuation of muscle tissue (myosteatosis)."""
    metal_hip: MetalHip = MetalHip.NONE
    """Total hip prostheses (stem, head, cup) on one side or both, with streak artefacts; the metal replaces the
    femoral head and neck it stands for."""
    contrast: bool = False
    """Portal-venous phase intravenous contrast: vessels ~180-250 HU, muscle +8 HU."""
    table: bool = True
    """Include the CT table top (carbon fibre and foam) below the patient."""
    offset_mm: tuple[float, float] = (0.0, 0.0)
    """In-plane shift of the patient from the image centre (x to the patient's left, y posterior)."""
    legs_touching: bool = False
    """Thighs and knees close together so that their skin touches."""
    arms: bool = False
    """Forearms resting beside the pelvis and hips (arms down), a narrow gap from the trunk: muscle and bone that
    are not the lower extremity (label 0), for testing that a segmenter leaves them out."""
    patient_position: PatientPosition = PatientPosition.HFS
    age_years: int = 72
    fov_diameter_mm: float | None = None
    """Reconstruction diameter; ``None`` chooses 500 mm, or more when the body would not fit."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Free-form notes recorded in the ground truth (e.g. a cohort subject id); not used by the generator."""

    def __post_init__(self) -> None:
        # Coerce strings to the enums so that callers may pass plain values.
        for name, enum in (("fov", Fov), ("metal_hip", MetalHip), ("patient_position", PatientPosition)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                allowed = ", ".join(e.value for e in enum)
                raise PhantomParameterError(f"{name} {value!r} is not one of: {allowed}") from None
        object.__setattr__(self, "offset_mm", tuple(float(v) for v in self.offset_mm))
        self.validate()

    def validate(self) -> None:
        """Raise `PhantomParameterError` naming the first parameter out of range."""

        def check(name: str, value: float, low: float, high: float, unit: str = "") -> None:
            if not isinstance(value, (int, float)) or math.isnan(value) or not low <= value <= high:
                raise PhantomParameterError(f"{name} {value!r}{unit} is outside the allowed range {low:g}..{high:g}"
                                            f"{unit}")

        if self.sex not in ("F", "M"):
            raise PhantomParameterError(f"sex {self.sex!r} must be 'F' or 'M'")
        if 100 <= self.height_m <= 230:
            raise PhantomParameterError(f"height {self.height_m:g} looks like centimetres; give metres (e.g. 1.58)")
        check("height", self.height_m, 1.3, 2.1, " m")
        check("muscle scale", self.muscle_scale, 0.5, 1.5)
        check("fat thickness", self.fat_mm, 2.0, 60.0, " mm")
        check("slice spacing", self.slice_mm, 0.5, 10.0, " mm")
        if not isinstance(self.matrix, int) or not 64 <= self.matrix <= 1024:
            raise PhantomParameterError(f"matrix {self.matrix!r} must be an integer 64..1024")
        check("noise", self.noise_hu, 0.0, 100.0, " HU")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise PhantomParameterError(f"seed {self.seed!r} must be an integer 0..2^63-1")
        check("fatty infiltration", self.fatty_infiltration, 0.0, 1.0)
        check("age", self.age_years, 18, 110, " years")
        for axis, value in zip("xy", self.offset_mm, strict=True):
            check(f"offset {axis}", value, -80.0, 80.0, " mm")
        if len(self.offset_mm) != 2:
            raise PhantomParameterError("offset needs two values (x y) in mm")
        if self.fov_diameter_mm is not None:
            check("FOV diameter", self.fov_diameter_mm, 250.0, 700.0, " mm")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PhantomParameters:
        """The parameters `to_dict` wrote (e.g. ``ground_truth.json``'s ``parameters``); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        if "offset_mm" in values:
            values["offset_mm"] = tuple(values["offset_mm"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("fov", "metal_hip", "patient_position"):
            data[key] = str(data[key].value if hasattr(data[key], "value") else data[key])
        data["offset_mm"] = list(self.offset_mm)
        return data

    def fingerprint(self) -> str:
        """A short hash of the generating parameters (not `extra`): part of every UID of the phantom."""
        data = self.to_dict()
        data.pop("extra", None)
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
