"""SNOMED CT codes of the catalogue's anatomies, each with its source. See `catalogue`."""

from __future__ import annotations

from sarcoscreen.inference.catalogue import Code

_PS316 = "DICOM PS3.16"
_PENDING = "PENDING: generic code until the specific concept is sourced"

CODES: dict[str, Code] = {
    "hip_bone": Code("29850006", "SCT", "Iliac bone", _PENDING),
    "sacrum": Code("54735007", "SCT", "Sacrum", f"{_PS316} CID 4031"),
    "femur": Code("71341001", "SCT", "Femur", f"{_PS316} CID 4031"),
    "patella": Code("64234005", "SCT", "Patella", f"{_PS316} CID 4031"),
    "tibia": Code("12611008", "SCT", "Tibia", f"{_PS316} CID 7304"),
    "fibula": Code("87342007", "SCT", "Fibula", f"{_PS316} CID 4031"),
}
for _key in (
    "gluteus_maximus gluteus_medius gluteus_minimus iliacus obturator_externus obturator_internus pectineus "
    "piriformis psoas_major adductors biceps_femoris gracilis rectus_femoris sartorius semimembranosus "
    "semitendinosus tensor_fasciae_latae vastus_lateralis_intermedius vastus_medialis tibialis_anterior "
    "toe_extensors fibularis gastrocnemius soleus deep_posterior_leg gluteal_region_muscle hip_thigh_muscle "
    "lower_leg_muscle"
).split():
    CODES[_key] = Code("127954009", "SCT", "Skeletal muscle", _PENDING)
