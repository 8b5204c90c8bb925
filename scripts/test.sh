#!/usr/bin/env bash
# The test command (README, CI): lint, type-check, the import-layer contracts, then the whole
# suite: the core's tests and each plugin distribution's (pyproject testpaths).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check src tests plugins benchmarks
mypy
lint-imports
python -m pytest "$@"
