"""The ``threshold`` engine: weight-free segmentation of lower-extremity skeletal muscle by region.

`engine` (`ThresholdEngine`: the pipeline, landmarks, region extents and notes), `masks` (working grid, body,
bone, metal), `hip` (femoral heads from the pelvis), `skeleton` (landmarks with method and certainty), `regions`
(where muscle may be and which region). See ``docs/engines.md``.
"""

from sarcoscreen.inference.engines.threshold.engine import ThresholdEngine

__all__ = ["ThresholdEngine"]
