"""Progress bars only on a terminal (issue 13): a command whose standard error is a file or a pipe - a service's
log - gets no carriage-return bar updates, and ``--no-progress`` silences them on a terminal too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sarcoscreen.inference.phantom import PhantomParameters, make_phantom
from sarcoscreen.node.progress_bars import StepBars, wanted


def test_bars_are_wanted_only_on_a_terminal_and_not_when_refused(tmp_path: Path) -> None:
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as terminal:
            assert wanted(False, terminal)
            assert not wanted(True, terminal)
    finally:
        os.close(leader)
        os.close(follower)
    with (tmp_path / "log").open("w") as log:
        assert not wanted(False, log)


def test_a_disabled_bar_writes_nothing(capsys) -> None:
    bars = StepBars(False)
    for done in range(5):
        bars("U-Net", done, 5)
    bars.close()
    assert capsys.readouterr().err == ""


def test_analyze_writes_no_bar_updates_into_a_log(tmp_path: Path) -> None:
    make_phantom(PhantomParameters(matrix=64, slice_mm=10.0, fov="abdomen", seed=3), tmp_path / "phantom")
    done = subprocess.run([sys.executable, "-m", "sarcoscreen.node.cli", "analyze", str(tmp_path / "phantom" / "dicom"),
                           "--out", str(tmp_path / "out"), "--height", "1.7"],
                          check=False, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "SARCOSCREEN_STORAGE__DATA_DIR": str(tmp_path / "data")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "measurements.json").is_file()
    assert "\r" not in done.stderr
    assert "slice/s" not in done.stderr
