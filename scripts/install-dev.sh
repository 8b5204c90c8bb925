#!/usr/bin/env bash
# Install progresskit with its test tools, and every first-party plugin distribution under
# plugins/ the way a user installs a third party's plugin (its own package, entry points).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet -e ".[dev,server]"
for plugin in plugins/*/; do
    [ -f "$plugin/pyproject.toml" ] || continue
    # A plugin's own test tools (tensorboardX for progresskit-tensorboard) come with its extra.
    if grep -q '^test = ' "$plugin/pyproject.toml"; then
        python -m pip install --quiet -e "${plugin%/}[test]"
    else
        python -m pip install --quiet -e "$plugin"
    fi
done
