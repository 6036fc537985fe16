"""Coded concepts (DICOM PS3.3 Table 8.8-1 Code Sequence Macro) and the coding schemes sarcoscreen uses."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRIVATE_SCHEME", "PRIVATE_SCHEME_NAME", "Code"]

PRIVATE_SCHEME = "99SARCO"
"""sarcoscreen's private coding scheme designator (private designators start with "99", PS3.3 section 8.2), for
concepts no standard scheme has; declared in the Coding Scheme Identification Sequence of every object that uses
it."""

PRIVATE_SCHEME_NAME = "sarcoscreen private codes"


@dataclass(frozen=True)
class Code:
    """A coded concept and where the code was taken from."""

    value: str
    scheme: str
    meaning: str
    source: str
