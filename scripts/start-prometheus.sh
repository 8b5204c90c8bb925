#!/usr/bin/env bash
# start-prometheus.sh - make Debian's `prometheus` and `promtool` available for the tests
# (.ci/run runs it before the tests; docs/prometheus.md). The tests start their own
# Prometheus on loopback with a temporary config; this script starts nothing and leaves the
# package's own service stopped (no daemon on :9090 behind the tests' back).
#
# Idempotent: with both commands on PATH it does nothing.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    echo "start-prometheus: prometheus and promtool already installed"
    exit 0
fi

sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
# Keep the package's maintainer scripts from starting the service on their own: a
# policy-rc.d answering 101 ("action forbidden") for the length of the install only.
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
fi
trap 'if [ "$made_policy" = 1 ]; then $sudo rm -f /usr/sbin/policy-rc.d; fi' EXIT

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
# prometheus ships both binaries; its recommends (node exporter...) are not needed here.
$sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    --no-install-recommends prometheus

command -v prometheus >/dev/null && command -v promtool >/dev/null || {
    echo "start-prometheus: prometheus installed but prometheus/promtool not on PATH" >&2
    exit 1
}
echo "start-prometheus: $(prometheus --version 2>&1 | head -n 1)"
