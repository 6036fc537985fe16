"""``sarcoscreen demo``, the README's first command, end to end on a small phantom: the node on SQLite and local
folders receives the phantom from a real SCU, processes it and delivers SEG, SR and key image to the built-in
destination SCP; the output shows them, the results table and the ground-truth comparison."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest
from node_support import SARCOSCREEN

pytestmark = pytest.mark.slow


def test_demo_runs_the_whole_product(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run([*SARCOSCREEN, "demo", "--out", str(out), "--matrix", "96", "--slice-mm", "5",
                             "--destination", "builtin", "--timeout", "180"], capture_output=True, text=True,
                            timeout=300, check=False, cwd=tmp_path)
    text = result.stdout
    assert result.returncode == 0, text + result.stderr
    assert "3/3 outputs accepted by the destination" in text
    assert "At the destination (demo-pacs):" in text
    for line in ("SEG ", "SR ", "key image (SC)"):
        assert f"\n  {line}" in text
    assert "Engine against the phantom's exact ground truth" in text
    assert "Gluteal muscles" in text
    assert "processed" in text
    received = sorted(str(pydicom.dcmread(path, stop_before_pixels=True).Modality)
                      for path in (out / "destination").iterdir())
    assert received == ["OT", "SEG", "SR"]
    # The database and configuration stay for `sarcoscreen --config OUT/sarcoscreen.toml results|jobs`.
    jobs = subprocess.run([*SARCOSCREEN, "--config", str(out / "sarcoscreen.toml"), "jobs"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert jobs.returncode == 0, jobs.stderr
    assert "done" in jobs.stdout
    assert "3 sent of 3" in jobs.stdout
    assert "WARNING" not in result.stderr
    assert "ERROR" not in result.stderr
