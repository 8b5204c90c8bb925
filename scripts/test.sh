#!/usr/bin/env bash
# The test command (README, CI): lint, type-check, then the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check src tests plugins benchmarks
mypy
python -m pytest "$@"
