"""The model bundle shipped inside the package: where it is, and whether this installation has one.

The ``bayesian-unet`` engine uses it when ``engine.bundle_path`` is not set. The bundle is a folder bundle
(``manifest.json`` + ``model.safetensors``, the layout `bundle.save_bundle` writes and `bundle.read_bundle_files`
reads) in the package folder ``sarcoscreen/inference/engines/unet/shipped/``, shipped as package data
(``[tool.setuptools.package-data]`` in ``pyproject.toml``), so a wheel and ``pip install .`` carry it. A source
checkout or a build made before the bundle was added holds only the folder's ``README.txt``: then
`shipped_bundle_path` raises `NoShippedBundleError` saying so and what to set instead.

The folder is found with `importlib.resources.files` on this package, which is a plain folder for a regular or an
editable installation. Plain Python: no torch, so the configuration can check for the bundle without the ``unet``
extra.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from sarcoscreen.inference.engines.unet.manifest import MANIFEST_FILE, BundleError

__all__ = ["SHIPPED_FOLDER", "NoShippedBundleError", "has_shipped_bundle", "shipped_bundle_path", "shipped_folder"]

SHIPPED_FOLDER = "shipped"
"""The package-data folder of this package that holds the shipped bundle."""


class NoShippedBundleError(BundleError):
    """This installation ships no model bundle (the folder holds no ``manifest.json``)."""


def shipped_folder() -> Path:
    """The package folder ``sarcoscreen/inference/engines/unet/shipped`` (it may hold no bundle)."""
    folder = files(__package__ or "sarcoscreen.inference.engines.unet") / SHIPPED_FOLDER
    if not isinstance(folder, Path):  # e.g. imported from a zip file: the bundle would need extracting first
        raise NoShippedBundleError(f"the shipped model bundle folder {folder} is not a folder on disk (sarcoscreen "
                                   "installed as a zip?): set engine.bundle_path to a bundle folder or archive")
    return folder


def has_shipped_bundle(folder: Path | None = None) -> bool:
    """Whether `folder` (default: `shipped_folder`) holds a bundle's ``manifest.json``; not whether it loads."""
    try:
        return ((folder or shipped_folder()) / MANIFEST_FILE).is_file()
    except NoShippedBundleError:
        return False


def shipped_bundle_path(folder: Path | None = None) -> Path:
    """The shipped bundle folder: `folder` when given (tests), else `shipped_folder`.

    Only its presence is checked here (a ``manifest.json``); `bundle.load_bundle` then checks everything else
    (manifest, weights checksum, architecture) and refuses a broken bundle with its own message. Raises
    `NoShippedBundleError` when the folder holds no bundle.
    """
    folder = folder if folder is not None else shipped_folder()
    if not (folder / MANIFEST_FILE).is_file():
        raise NoShippedBundleError(
            f"no model bundle is shipped with this installation of sarcoscreen ({folder} holds no {MANIFEST_FILE}; "
            "e.g. a source checkout or a build without the trained weights): set engine.bundle_path to a bundle "
            "folder or archive, or install a sarcoscreen package that ships one")
    return folder
