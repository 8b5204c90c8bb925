#!/usr/bin/env bash
# Install progresskit with its test tools, and every first-party plugin distribution under
# plugins/ the way a user installs a third party's plugin (its own package, entry points).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet -e ".[dev,server]"
for plugin in plugins/*/; do
    [ -f "$plugin/pyproject.toml" ] && python -m pip install --quiet -e "$plugin"
done
