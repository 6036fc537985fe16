"""Segmentation engines, chosen by name in the configuration (``[engine] name``; `registry.create_engine`).

* ``threshold`` - weight-free: anatomical landmarks from bone, skeletal muscle by HU window inside the limb and
  gluteal compartments, region labels (`sarcoscreen.inference.engines.threshold`).
* ``bayesian-unet`` - the 2-D U-Net with Monte-Carlo dropout of Hiasa et al. 2020, loaded from a model bundle
  (`sarcoscreen.inference.engines.unet`); needs the ``unet`` extra (torch).
* ``labelmap`` - no segmentation: measures a given NIfTI label map on the series' grid (ground truth, manual
  segmentations) (`sarcoscreen.inference.engines.labelmap`).

The interface every engine implements is `base.Engine`.
"""

from sarcoscreen.inference.engines.base import Engine, EngineError, Landmark, Progress, Segmentation
from sarcoscreen.inference.engines.registry import ENGINE_NAMES, create_engine

__all__ = ["ENGINE_NAMES", "Engine", "EngineError", "Landmark", "Progress", "Segmentation", "create_engine"]
