#!/usr/bin/env python3
"""Screenshots of the QA web console's pages for the documentation, from the browser test.

    .venv/bin/python scripts/console_screenshots.py [--out docs/screenshots]

Runs ``tests/e2e/test_web_browser.py`` (headless Chromium against the real console on a database the real worker
filled from SYNTHETIC phantom series: no patient data) with ``SARCOSCREEN_SCREENSHOTS`` set, so the test copies
each page it saves (sign-in, results, series, queue, cohort when the console has it, health) to
``OUT/console-<page>.png``. Needs what the test needs: Debian's chromium and chromium-driver
(``scripts/install-system-deps.sh``) and the test extra. The exit status is pytest's, or 1 when no screenshot was
taken (the test skipped).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = ROOT / "tests" / "e2e" / "test_web_browser.py"


def main(argv: list[str] | None = None) -> int:
    """Run the browser test with the screenshots copied to ``--out``; pytest's exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots",
                        help="folder for console-<page>.png (default: docs/screenshots)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SARCOSCREEN_SCREENSHOTS": str(out)}
    command = [sys.executable, "-m", "pytest", str(TEST), "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    started = time.time()
    code = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    written = [path for path in sorted(out.glob("console-*.png")) if path.stat().st_mtime >= started]
    for path in written:
        print(f"  {path}")
    if code == 0 and not written:  # skipped: no chromium, chromedriver or selenium
        print("no screenshot was taken (was the browser test skipped?)", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
