#!/usr/bin/env bash
# Set up everything the tests need (virtual environment, Python packages, Debian DICOM peers), check style,
# and run the test suite. Extra arguments go to pytest, e.g. `bash scripts/test.sh -k loader`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
echo "== ruff"
.venv/bin/ruff check .
echo "== pytest"
# Two processes (SARCOSCREEN_TEST_WORKERS; 0 runs in this process), whole files to each so that a file's
# module fixtures are made once; tests/conftest.py hands out the slowest file first. The 25 slowest tests are
# listed at the end (the suite is kept under ~15 minutes on 2 cores).
exec .venv/bin/python -m pytest -n "${SARCOSCREEN_TEST_WORKERS:-2}" --dist loadfile --durations=25 "$@"
