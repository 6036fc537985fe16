"""``sarcoscreen bundle [PATH]``: what a Bayesian U-Net model bundle is, before it measures anyone's muscle.

Shows the bundle at PATH, else ``engine.bundle_path``, else the bundle shipped with sarcoscreen
(`sarcoscreen.inference.engines.unet.shipped_bundle`): the manifest checked and the weights verified by checksum
(`sarcoscreen.inference.engines.unet.describe_bundle`), in words by
`sarcoscreen.inference.engines.unet.bundle_info.describe_manifest` - model, structures, input, inference
defaults, training data with provenance, licences and intended use, and the line every result will carry. Needs
the ``unet`` extra (the checksum check lives with the torch-side bundle reader); without it, or without a bundle,
it says so and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys

from sarcoscreen.node.config import Settings

__all__ = ["run_bundle"]


def run_bundle(args: argparse.Namespace, settings: Settings) -> int:
    from sarcoscreen.inference.engines.base import EngineError
    from sarcoscreen.inference.engines.unet import describe_bundle
    from sarcoscreen.inference.engines.unet.bundle_info import describe_manifest
    from sarcoscreen.inference.engines.unet.shipped_bundle import shipped_bundle_path

    path = args.path or settings.engine.bundle_path
    try:
        shown = f"{path}" if path is not None else f"{shipped_bundle_path()} (shipped with sarcoscreen)"
        manifest = describe_bundle(path)
    except EngineError as exc:  # BundleError and NoShippedBundleError are EngineErrors
        print(f"sarcoscreen: {exc}", file=sys.stderr)
        return 1
    print(describe_manifest(manifest, shown))
    return 0
