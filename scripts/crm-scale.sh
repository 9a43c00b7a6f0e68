#!/usr/bin/env bash
# crm-scale.sh SERVICE N: run N instances of one service next to what
# `make up` started. Instance 1 is `make up`'s own (var/SERVICE.pid); instance
# k >= 2 runs as var/SERVICE-k.pid, logs to var/SERVICE-k.log and serves
# /health and /metrics on the service's port + 10 * (k - 1). All instances
# consume the same RPC queue, so RabbitMQ spreads the requests over them.
# A smaller N stops the extra instances with SIGTERM (they finish the requests
# in hand; the others take over the queue), SIGKILL after the grace period.
# Needs PostgreSQL (CRM_DB=postgres): SQLite cannot serve several processes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

usage="usage: make scale SERVICE=<$(IFS='|'; echo "${CRM_SERVICES[*]}")> N=<instances>"
svc=${1:-}
n=${2:-}
[[ -n $svc && -n $n ]] || die "$usage"
[[ -v "CRM_SERVICE_CLASS[$svc]" ]] || die "unknown service '$svc'. $usage"
[[ $n =~ ^[0-9]+$ ]] && ((n >= 1)) || die "N must be a number >= 1, not '$n'"
[[ $svc != gateway ]] || die "the gateway is the one HTTP entry point on port \$CRM_GATEWAY_PORT; scale the services behind it"

crm_export_env "$PWD"
GRACE=${CRM_STOP_GRACE_SECONDS:-15}
db_var="CRM_${svc^^}_DB_URL"
if ((n > 1)) && [[ ${!db_var} != postgresql* ]]; then
    die "$svc uses ${!db_var%%:*} ($db_var): several instances need PostgreSQL. Run 'make down', then 'CRM_DB=postgres make up' and 'CRM_DB=postgres make scale SERVICE=$svc N=$n'"
fi
live_service_pid "var/$svc.pid" "$svc" >/dev/null || die "$svc is not running: 'make up' first"

shopt -s nullglob
# Stop the instances above N (k > n), whatever their number.
extra=()
for pidfile in var/"$svc"-*.pid; do
    k=$(basename "$pidfile" .pid)
    k=${k##*-}
    [[ $k =~ ^[0-9]+$ ]] && ((k > n)) && extra+=("$pidfile")
done
if ((${#extra[@]})); then
    stop_instances "$GRACE" "${extra[@]}"
fi

# Start the missing ones among 2..N, each with its own HTTP port.
port_var="CRM_${svc^^}_HTTP_PORT"
started=()
for ((k = 2; k <= n; k++)); do
    name=$svc-$k
    if pid=$(live_service_pid "var/$name.pid" "$svc"); then
        log "$name: already running (pid $pid)"
        continue
    fi
    port=$(instance_http_port "$svc" "$k")
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" 2>/dev/null; then
        die "port $port (for $name) is taken by another process"
    fi
    env "$port_var=$port" nohup .venv/bin/nameko run --config "services/$svc/config.yaml" \
        "$svc.service:${CRM_SERVICE_CLASS[$svc]}" >>"var/$name.log" 2>&1 </dev/null &
    echo $! >"var/$name.pid"
    started+=("$name:$port")
    log "$name: started (pid $!, port $port, log var/$name.log)"
done

# Waiting stops early when the instance died: nothing comes of waiting longer.
healthy_or_dead() {
    live_service_pid "var/$1.pid" "$svc" >/dev/null || return 0
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$2/health"
}
for entry in "${started[@]}"; do
    name=${entry%%:*} port=${entry##*:}
    if ! wait_until 60 "$name /health" healthy_or_dead "$name" "$port" ||
        ! live_service_pid "var/$name.pid" "$svc" >/dev/null; then
        tail -n 30 "var/$name.log" >&2
        die "$name did not start; see var/$name.log"
    fi
done
running=1
for pidfile in var/"$svc"-*.pid; do
    live_service_pid "$pidfile" "$svc" >/dev/null && running=$((running + 1))
done
log "$svc: $running instance(s) running"
