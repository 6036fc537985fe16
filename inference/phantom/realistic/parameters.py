"""Parameters of a CT simulated from a real label map: the protocol, the patient-level options and randomisation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from sarcoscreen.inference.phantom.parameters import MetalHip, PhantomParameterError

__all__ = ["Crop", "Protocol", "SimulationParameters"]


class Crop(StrEnum):
    """Field of view cut from the annotation's range (lumbar spine to mid-thigh)."""

    NONE = "none"
    """The whole annotated range."""
    ABDOMEN_PELVIS = "abdomen-pelvis"
    """From the top of the annotation down to the lesser trochanter (the lower of the two sides), where an
    abdomen-pelvis CT ends."""
    HIP = "hip"
    """From 20 mm above the iliac crest top down to 50 mm below the lesser trochanter: a hip CT."""


@dataclass(frozen=True)
class Protocol:
    """Acquisition and reconstruction of the simulated series."""

    pixel_mm: float = 1.0
    """In-plane pixel size; the field (512 mm of the annotation) is kept, the matrix follows."""
    slice_mm: float = 3.0
    """Slice spacing."""
    thickness_mm: float = 3.0
    """Slice thickness (FWHM of the slice profile). The annotation is 3 mm thick: thinner slices interpolate."""
    noise_scale: float = 1.0
    """Noise relative to the measured noise of the real 002 series (7.1 HU at 1 x 1 x 3 mm), rescaled to the output
    voxel by sqrt(voxel volume); a lower kVp or dose is a larger scale."""
    contrast: bool = False

    def validate(self) -> None:
        for name, value, low, high in (("pixel size", self.pixel_mm, 0.4, 4.0), ("slice spacing", self.slice_mm,
                                       0.5, 10.0), ("slice thickness", self.thickness_mm, 0.5, 10.0),
                                       ("noise scale", self.noise_scale, 0.0, 5.0)):
            if not isinstance(value, (int, float)) or not low <= value <= high:
                raise PhantomParameterError(f"{name} {value!r} is outside the allowed range {low:g}..{high:g}")


@dataclass(frozen=True)
class SimulationParameters:
    """Everything that defines one simulated series besides the annotation folder."""

    protocol: Protocol = field(default_factory=Protocol)
    seed: int = 0
    sex: str = "M"
    """Which pelvic organ the simulator places behind the bladder: prostate (M) or uterus (F). The Pelvic Reference
    Data cases are men."""
    height_m: float = 1.75
    """PatientSize written to the series (the annotation carries none): an assumption, used only for SMI."""
    metal_hip: MetalHip = MetalHip.NONE
    crop: Crop = Crop.NONE
    fatty_infiltration: Mapping[int, float] | None = None
    """Fat fraction per annotation muscle label (5-28); ``None``: the profile measured on 002
    (`tissue_model.MUSCLE_FAT_FRACTION_002`)."""
    infiltration_scale: float = 1.0
    """Multiplies every muscle's fat fraction (0 = lean muscle)."""
    randomise: bool = False
    """SynthSeg-style domain randomisation on top (`randomise.py`): for training data only."""
    source_slices: tuple[int, int] | None = None
    """Only annotation slices ``start:stop`` (before the crop): a cheap slab for tests."""

    def __post_init__(self) -> None:
        for name, enum in (("metal_hip", MetalHip), ("crop", Crop)):
            try:
                object.__setattr__(self, name, enum(getattr(self, name)))
            except ValueError:
                allowed = ", ".join(e.value for e in enum)
                raise PhantomParameterError(f"{name} {getattr(self, name)!r} is not one of: {allowed}") from None
        self.protocol.validate()
        if self.sex not in ("F", "M"):
            raise PhantomParameterError(f"sex {self.sex!r} must be 'F' or 'M'")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise PhantomParameterError(f"seed {self.seed!r} must be an integer 0..2^63-1")
        if not 1.3 <= self.height_m <= 2.1:
            raise PhantomParameterError(f"height {self.height_m!r} m is outside 1.3..2.1 m")
        if not 0.0 <= self.infiltration_scale <= 3.0:
            raise PhantomParameterError(f"infiltration scale {self.infiltration_scale!r} is outside 0..3")
        for label, value in (self.fatty_infiltration or {}).items():
            if not 5 <= int(label) <= 28 or not 0.0 <= float(value) <= 1.0:
                raise PhantomParameterError(f"fatty infiltration {label}: {value!r} needs a muscle label 5..28 "
                                            "and a fraction 0..1")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["metal_hip"] = self.metal_hip.value
        data["crop"] = self.crop.value
        if self.fatty_infiltration is not None:
            data["fatty_infiltration"] = {str(k): float(v) for k, v in self.fatty_infiltration.items()}
        data["source_slices"] = list(self.source_slices) if self.source_slices else None
        return data

    def fingerprint(self, source_name: str) -> str:
        text = json.dumps({"source": source_name, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
