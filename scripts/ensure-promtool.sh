#!/usr/bin/env bash
# Make sure promtool and the prometheus binary are installed (Debian's
# `prometheus` package has both): `make test` checks and unit-tests the alert
# rules with promtool and starts a throwaway Prometheus in
# tests/test_prometheus.py. Only the binaries are wanted: the package's own
# system service must not start (not now, not at boot), and the node exporter it
# recommends is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
    exit 0
fi

# invoke-rc.d and deb-systemd-invoke ask /usr/sbin/policy-rc.d before starting a
# service; exit 101 means "not allowed". Put one in place for the install unless
# the machine already has its own (containers often do), and remove only ours.
policy=/usr/sbin/policy-rc.d
ours=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# ensure-promtool.sh: no service starts while prometheus installs\nexit 101\n' |
        as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    ours=1
fi
cleanup() { if ((ours)); then as_root rm -f "$policy"; fi; }
trap cleanup EXIT

apt_install --no-install-recommends prometheus

# Belt and braces: whatever the init system, leave no prometheus server running
# or enabled at boot.
if [[ -d /run/systemd/system ]]; then
    as_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif command -v update-rc.d >/dev/null; then
    as_root service prometheus stop >/dev/null 2>&1 || true
    as_root update-rc.d prometheus disable >/dev/null 2>&1 || true
fi

command -v promtool >/dev/null || die "promtool still missing after installing prometheus"
log "promtool: $(promtool --version 2>&1 | head -n 1)"
