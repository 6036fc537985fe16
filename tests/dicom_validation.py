"""Real validators for the DICOM outputs: dicom3tools ``dciodvfy`` and dcmtk ``dsrdump``.

tests/dcmtk.py finds both outside the virtual environment and checks they are those tools; tests skip with the
reason when a tool is missing (scripts/install-system-deps.sh installs both).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dcmtk import dcmtk_tool, dicom3tools_tool

# Warnings that dciodvfy gives for every object we write, and why (listed in docs/dicom-outputs.md).
EXPECTED_WARNINGS = (
    # Our private coding scheme: dciodvfy knows only registered designators; 99SARCO is declared in the
    # Coding Scheme Identification Sequence as PS3.3 8.2 requires.
    re.compile(r"Unrecognized defined term <99SARCO> for value 1 of attribute <Coding Scheme Designator>"),
)


@dataclass(frozen=True)
class Verdict:
    iod: str
    errors: tuple[str, ...]
    warnings: tuple[str, ...]

    def unexpected_warnings(self, *allowed: re.Pattern[str]) -> list[str]:
        patterns = (*EXPECTED_WARNINGS, *allowed)
        return [w for w in self.warnings if not any(p.search(w) for p in patterns)]


def dciodvfy(path: Path) -> Verdict:
    """dicom3tools' IOD verifier on `path`: the IOD it recognised, its Error lines and Warning lines."""
    run = subprocess.run([dicom3tools_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=120,
                         check=False)
    lines = [line.strip() for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    errors = tuple(line for line in lines if line.startswith("Error"))
    warnings = tuple(line for line in lines if line.startswith("Warning"))
    iod = next((line for line in lines if not line.startswith(("Error", "Warning"))), "")
    return Verdict(iod, errors, warnings)


def dsrdump(path: Path) -> str:
    """dcmtk's SR renderer on `path`; fails the test when dsrdump cannot render it."""
    run = subprocess.run([dcmtk_tool("dsrdump"), str(path)], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, f"dsrdump failed: {run.stderr}"
    assert not [line for line in run.stderr.splitlines() if line.startswith(("E:", "F:"))], run.stderr
    return run.stdout
