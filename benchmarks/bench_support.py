"""What the benchmark scripts share: inputs made once and cached, and a step measured in a fresh interpreter.

* `ensure_made` - a folder filled once and reused by later runs (a marker file ``COMPLETE`` holds the parameters
  it was made with);
* `write_phantom` - the digital phantom written by ``sarcoscreen phantom`` in a subprocess;
* `measure_child` - run the calling script again with ``--child ARGS`` in a fresh interpreter: its result is the
  JSON object on the last line it prints, plus its own peak RSS (``ru_maxrss`` from ``os.wait4``, so memory of
  one step never carries into the next).

Scripts import it as a sibling (``python benchmarks/<script>.py`` puts ``benchmarks/`` on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ensure_made", "measure_child", "write_phantom"]


def ensure_made(folder: Path, key: str, make: Callable[[], object]) -> None:
    """Run `make` (which fills `folder`) unless a previous run completed it with the same `key`."""
    marker = folder / "COMPLETE"
    if marker.is_file() and marker.read_text().strip() == key:
        return
    make()
    marker.write_text(key)


def write_phantom(folder: Path, *options: str) -> None:
    """``sarcoscreen phantom --out FOLDER OPTIONS --no-progress`` in a subprocess (its output discarded)."""
    subprocess.run([sys.executable, "-m", "sarcoscreen.node.cli", "phantom", "--out", str(folder), *options,
                    "--no-progress"], check=True, stdout=subprocess.DEVNULL)


def measure_child(script: str, arguments: list[str], label: str) -> dict[str, Any]:
    """Run ``python SCRIPT --child ARGUMENTS``; its last line of output (JSON) with ``peak_rss_mib`` added.
    `label` names the step when the child fails (SystemExit)."""
    process = subprocess.Popen([sys.executable, script, "--child", *arguments], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{label} child failed with exit code {process.returncode}")
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    return result
