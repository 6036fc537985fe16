"""sarcoscreen's own version, as every file, DICOM object and ``--version`` records it.

The one look-up of the installed distribution's version; it lives in the lowest package because the phantom,
the report writers, the database and the command line all record it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["UNKNOWN_VERSION", "software_version"]

UNKNOWN_VERSION = "0+unknown"
"""The version recorded when sarcoscreen runs from a source tree that was never installed."""


def software_version() -> str:
    """sarcoscreen's installed version (e.g. ``0.1.0``), or `UNKNOWN_VERSION` when it is not installed."""
    try:
        return version("sarcoscreen")
    except PackageNotFoundError:
        return UNKNOWN_VERSION
