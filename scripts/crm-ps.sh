#!/usr/bin/env bash
# One line per service: its pid, whether that process is alive, its HTTP port
# and what GET /health answers there. Reads the same environment as
# `make up`, so custom ports show correctly when exported the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

crm_export_env "$PWD"
printf '%-14s %-8s %-8s %-6s %s\n' SERVICE PID STATE PORT HEALTH
for svc in "${CRM_SERVICES[@]}"; do
    pid=-
    state=stopped
    if [[ -f var/$svc.pid ]]; then
        pid=$(<"var/$svc.pid")
        if live_service_pid "var/$svc.pid" "$svc" >/dev/null; then state=alive; else state=dead; fi
    fi
    port=$(service_http_port "$svc")
    # curl prints 000 when nothing answers.
    health=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/health" 2>/dev/null || true)
    printf '%-14s %-8s %-8s %-6s %s\n' "$svc" "$pid" "$state" "$port" "${health:-000}"
    # Extra instances started by `make scale`.
    for pidfile in var/"$svc"-*.pid; do
        [[ -e $pidfile ]] || continue
        name=$(basename "$pidfile" .pid)
        pid=$(<"$pidfile")
        if live_service_pid "$pidfile" "$svc" >/dev/null; then state=alive; else state=dead; fi
        port=$(instance_http_port "$svc" "${name##*-}")
        health=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/health" 2>/dev/null || true)
        printf '%-14s %-8s %-8s %-6s %s\n' "$name" "$pid" "$state" "$port" "${health:-000}"
    done
done
