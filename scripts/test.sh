#!/usr/bin/env bash
# Set up everything the tests need (virtual environment, Python packages, Debian DICOM peers), check style,
# and run the test suite. Extra arguments go to pytest, e.g. `bash scripts/test.sh -k loader`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
echo "== ruff"
.venv/bin/ruff check .
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
