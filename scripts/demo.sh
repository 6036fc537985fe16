#!/usr/bin/env bash
# Set up sarcoscreen in .venv and run the main job on embedded defaults (SQLite and folders under
# ./demo-output). Extra arguments go to `sarcoscreen demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/sarcoscreen demo "$@"
