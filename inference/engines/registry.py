"""Segmentation engines by name (``[engine] name`` of the configuration, ``--engine`` of the command line).

Each engine's module is imported only when that engine is created, so choosing ``threshold`` never imports the
U-Net's torch, and a missing ``unet`` extra is an `EngineError` naming it, raised by the engine.
"""

from __future__ import annotations

from typing import Any

from sarcoscreen.inference.engines.base import Engine, EngineError

__all__ = ["ENGINE_NAMES", "create_engine"]

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
