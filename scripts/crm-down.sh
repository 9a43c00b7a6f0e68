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

# SIGTERM to all first, so they shut down in parallel within one grace period.
declare -A stopping=()
for pidfile in "${pidfiles[@]}"; do
    svc=$(basename "$pidfile" .pid)
    if pid=$(live_service_pid "$pidfile" "$svc"); then
        kill -TERM "$pid" 2>/dev/null || true
        stopping[$svc]=$pid
        log "$svc: stopping (pid $pid)"
    else
        log "$svc: not running (stale $pidfile)"
        rm -f "$pidfile"
    fi
done

still_running() {
    local svc
    for svc in "${!stopping[@]}"; do
        pid_alive "${stopping[$svc]}" && return 0
    done
    return 1
}
deadline=$((SECONDS + GRACE))
while still_running && ((SECONDS < deadline)); do
    sleep 0.2
done

for svc in "${!stopping[@]}"; do
    pid=${stopping[$svc]}
    if pid_alive "$pid"; then
        log "$svc: still running after ${GRACE}s, SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
done
# SIGKILL is not instant either; ports are free only once the process is gone.
deadline=$((SECONDS + 5))
while still_running && ((SECONDS < deadline)); do
    sleep 0.2
done
for svc in "${!stopping[@]}"; do
    rm -f "var/$svc.pid"
done
log "stopped"
