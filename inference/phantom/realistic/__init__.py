"""CT simulated from real label maps (``sarcoscreen phantom --anatomy DIR``): real anatomy, calibrated CT numbers.

`simulate_ct(annotation_dir, SimulationParameters(...), out_dir)` writes the digital phantom's layout (``dicom/``,
``labels.nii.gz``, ``ground_truth.json``). Modules by concern: `parameters`, `source` (the annotation),
`tissue_model` (calibrated HU), `pelvic_organs`, `paint`, `randomise`, `simulate`, `tissue_stats` (per-tissue
statistics for calibration). See docs/phantom.md, "CT from real label maps".
"""

from sarcoscreen.inference.phantom.realistic.parameters import Crop, Protocol, SimulationParameters
from sarcoscreen.inference.phantom.realistic.simulate import simulate_ct, simulate_hu

__all__ = ["Crop", "Protocol", "SimulationParameters", "simulate_ct", "simulate_hu"]
