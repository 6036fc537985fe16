"""The digital lower-extremity phantom: synthetic CT series with exact label maps and ground-truth masses.

`procedural` (`make_phantom`, `label_grid`: the parametric anatomy written as a CT series), `parameters`,
`anatomy`, `geometry`, `rasterize`, `tissues`, `ct_values`, `dicom_writer`, `ground_truth`, `result`, `crop`
(`crop_phantom`: a written phantom cut like an abdomen-pelvis CT), `cohort`, and `realistic` (CT simulated from a
real label map). See ``docs/phantom.md``.
"""

from sarcoscreen.inference.phantom.anatomy import build_anatomy
from sarcoscreen.inference.phantom.crop import crop_phantom, cut_description
from sarcoscreen.inference.phantom.parameters import (
    Fov,
    MetalHip,
    PatientPosition,
    PhantomParameterError,
    PhantomParameters,
)
from sarcoscreen.inference.phantom.procedural import (
    LabelGrid,
    fov_z_range,
    label_grid,
    label_volume,
    make_phantom,
    nifti_affine,
)
from sarcoscreen.inference.phantom.result import PhantomResult, software_version

__all__ = [
    "Fov",
    "LabelGrid",
    "MetalHip",
    "PatientPosition",
    "PhantomParameterError",
    "PhantomParameters",
    "PhantomResult",
    "build_anatomy",
    "crop_phantom",
    "cut_description",
    "fov_z_range",
    "label_grid",
    "label_volume",
    "make_phantom",
    "nifti_affine",
    "software_version",
]
