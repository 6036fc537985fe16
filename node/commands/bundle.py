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
from pathlib import Path

from sarcoscreen.node.commands.command import SubParsers, loaded
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import Settings

__all__ = ["add_parser", "run"]


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser(
        "bundle", help="Describe a Bayesian U-Net model bundle (weights verified): model, structures, training data "
                       "with provenance, licences and intended use; needs the 'unet' extra.")
    parser.add_argument("path", nargs="?", type=Path, metavar="PATH",
                        help="Bundle folder or archive (default: engine.bundle_path when set, else the bundle "
                             "shipped with sarcoscreen).")
    parser.set_defaults(run=run, needs_settings=True)


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.inference.engines.base import EngineError
    from sarcoscreen.inference.engines.unet import describe_bundle
    from sarcoscreen.inference.engines.unet.bundle_info import describe_manifest
    from sarcoscreen.inference.engines.unet.shipped_bundle import shipped_bundle_path

    path = args.path or loaded(settings).engine.bundle_path
    try:
        shown = f"{path}" if path is not None else f"{shipped_bundle_path()} (shipped with sarcoscreen)"
        manifest = describe_bundle(path)
    except EngineError as exc:  # BundleError and NoShippedBundleError are EngineErrors
        raise UserError(str(exc), ExitCode.FAILED) from None
    print(describe_manifest(manifest, shown))
    return ExitCode.OK
