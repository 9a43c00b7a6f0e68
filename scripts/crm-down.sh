#!/usr/bin/env bash
# Stop the services that `make up` started, and only those: the processes
# named by var/*.pid. Each gets SIGTERM (nameko then finishes the requests in
# hand); whatever still runs after the grace period gets SIGKILL. Nothing is
# ever killed by name, so other nameko processes on the machine (tests,
# another checkout) are safe.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

GRACE=${CRM_STOP_GRACE_SECONDS:-15}

shopt -s nullglob
pidfiles=(var/*.pid)
if ((${#pidfiles[@]} == 0)); then
    log "nothing to stop (no var/*.pid)"
    exit 0
fi

# Instances of `make scale` (var/<service>-<k>.pid) are stopped the same way.
stop_instances "$GRACE" "${pidfiles[@]}"
log "stopped"
