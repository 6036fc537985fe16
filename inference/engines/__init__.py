"""Segmentation engines, chosen by name in the configuration (``[engine] name``).

* ``threshold`` - weight-free: anatomical landmarks from bone, skeletal muscle by HU window inside the limb and
  gluteal compartments, region labels (`sarcoscreen.inference.engines.threshold`).
* ``bayesian-unet`` - the 2-D U-Net with Monte-Carlo dropout of Hiasa et al. 2020, loaded from a model bundle
  (`sarcoscreen.inference.engines.unet`); needs the ``unet`` extra (torch).
* ``labelmap`` - no segmentation: measures a given NIfTI label map on the series' grid (ground truth, manual
  segmentations) (`sarcoscreen.inference.engines.labelmap`).
"""

from __future__ import annotations

from typing import Any

from sarcoscreen.inference.engines.base import Engine, EngineError, Landmark, Progress, Segmentation

__all__ = ["ENGINE_NAMES", "Engine", "EngineError", "Landmark", "Progress", "Segmentation", "create_engine"]

ENGINE_NAMES = ("threshold", "bayesian-unet", "labelmap")


def create_engine(name: str, **options: Any) -> Engine:
    """The engine called `name`, configured with `options` (engine-specific keyword arguments)."""
    if name == "threshold":
        from sarcoscreen.inference.engines.threshold import ThresholdEngine

        return ThresholdEngine(**options)
    if name == "bayesian-unet":
        from sarcoscreen.inference.engines.unet import BayesianUNetEngine

        return BayesianUNetEngine(**options)
    if name == "labelmap":
        from sarcoscreen.inference.engines.labelmap import LabelMapEngine

        return LabelMapEngine(**options)
    raise EngineError(f"unknown engine {name!r}; known engines: {', '.join(ENGINE_NAMES)}")
