"""The ``bayesian-unet`` engine (Hiasa et al., IEEE TMI 2020): per-muscle segmentation with Monte-Carlo dropout
uncertainty, from a model bundle. See ``docs/unet-engine.md``.

`engine` (`BayesianUNetEngine`, `describe_bundle`), `torch_runtime` (the ``unet`` extra checked, the device
chosen), `model`, `manifest`, `bundle`, `shipped_bundle`, `bundle_info`, `preprocess`, `inference`. Importing this
package does not import torch; creating an engine does.
"""

from sarcoscreen.inference.engines.unet.engine import ENGINE_VERSION, BayesianUNetEngine, describe_bundle
from sarcoscreen.inference.engines.unet.manifest import BundleError
from sarcoscreen.inference.engines.unet.torch_runtime import MISSING_EXTRA, resolve_device

__all__ = ["ENGINE_VERSION", "MISSING_EXTRA", "BayesianUNetEngine", "BundleError", "describe_bundle",
           "resolve_device"]
