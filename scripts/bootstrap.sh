#!/usr/bin/env bash
# Set up a virtual environment in .venv with sarcoscreen and what it needs.
#   scripts/bootstrap.sh            runtime only (threshold engine, node, reports)
#   scripts/bootstrap.sh test       + test tools, the U-Net extra and the Debian DICOM peers
# Idempotent; safe to run before every command.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
extras=""
if [ "$mode" = "test" ]; then
  extras="unet,test"
  bash scripts/install-system-deps.sh
fi
stamp=".venv/.sarcoscreen-installed-$mode"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
  .venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
  touch "$stamp"
fi
