#!/usr/bin/env bash
# Start the whole CRM locally: migrate each service's database, start every
# service that is not already running (as a background nameko process with
# its pid in var/<service>.pid and its output in var/<service>.log), then wait
# until the gateway reports ready. Safe to run again: running services are
# left alone. Expects `make venv rabbitmq` (and `postgres databases` with
# CRM_DB=postgres) to have run; `make up` does that.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

# `make up` passes the time it started, so the venv and broker checks count too.
started_at=${CRM_UP_STARTED_AT:-$(date +%s.%N)}
root=$PWD
crm_export_env "$root"
READY_WAIT=${CRM_READY_WAIT_SECONDS:-90}
ready_url=http://127.0.0.1:$CRM_GATEWAY_PORT/ready

[[ -x .venv/bin/nameko ]] || die ".venv is missing: run 'make venv'"
command -v curl >/dev/null || die "curl is missing: run 'make rabbitmq' (it installs it) or apt-get install curl"
mkdir -p "$CRM_VAR_DIR"
mkdir -p var

# One keyring for every service process (personal data is encrypted at rest):
# the key file is made here, before any migration or service needs it, unless
# the keys come from CRM_DATA_KEYS. Losing it loses the encrypted data.
if [[ -z ${CRM_DATA_KEYS:-} ]]; then
    keys_note=$(.venv/bin/python -m crm_common.crmctl keys init) || die "creating the data-key file failed"
    log "$keys_note"
fi

print_log_tails() {
    local svc
    for svc in "${CRM_SERVICES[@]}"; do
        [[ -f var/$svc.log ]] || continue
        log "----- var/$svc.log (last 30 lines) -----"
        tail -n 30 "var/$svc.log" >&2
    done
}

# Migrations first, one service at a time: a schema change must be in place
# before the code that needs it starts. Upgrading a database already at head
# is a no-op, so this is harmless when everything already runs.
for svc in "${CRM_SERVICES[@]}"; do
    if ! .venv/bin/python -m crm_common.migrate "$svc" >>"var/$svc.log" 2>&1; then
        tail -n 30 "var/$svc.log" >&2
        die "migrating the $svc database failed (full output in var/$svc.log)"
    fi
done
log "databases: at head ($CRM_DB)"

# Start what is not running. nohup and no terminal: the services outlive this
# script and the make that ran it; `make down` stops them by pid.
for svc in "${CRM_SERVICES[@]}"; do
    if pid=$(live_service_pid "var/$svc.pid" "$svc"); then
        log "$svc: already running (pid $pid)"
        continue
    fi
    nohup .venv/bin/nameko run --config "services/$svc/config.yaml" \
        "$svc.service:${CRM_SERVICE_CLASS[$svc]}" >>"var/$svc.log" 2>&1 </dev/null &
    echo $! >"var/$svc.pid"
    log "$svc: started (pid $!, port $(service_http_port "$svc"), log var/$svc.log)"
done

# Ready means the gateway answers /ready with 200, which it does only once it
# can reach the services behind it. A service that dies meanwhile will not
# come back by waiting: stop at once and show why.
dead_services() {
    local svc
    for svc in "${CRM_SERVICES[@]}"; do
        live_service_pid "var/$svc.pid" "$svc" >/dev/null || printf '%s ' "$svc"
    done
}
deadline=$((SECONDS + READY_WAIT))
failure=
until curl -fsS -o /dev/null --max-time 2 "$ready_url" 2>/dev/null; do
    dead=$(dead_services)
    dead=${dead% }
    if [[ -n $dead ]]; then
        failure="exited during startup: $dead"
    elif ((SECONDS >= deadline)); then
        failure="not ready within ${READY_WAIT}s ($ready_url)"
    fi
    [[ -z $failure ]] || break
    sleep 0.5
done
if [[ -n $failure ]]; then
    print_log_tails
    die "the CRM did not start: $failure. See var/*.log; 'make down' stops what did start."
fi

gateway=http://127.0.0.1:$CRM_GATEWAY_PORT
password_file=$CRM_VAR_DIR/admin-password
if [[ -n ${CRM_ADMIN_PASSWORD:-} ]]; then
    password_note="the value of CRM_ADMIN_PASSWORD"
    # shellcheck disable=SC2016 # the variable's name, not its value: no secret on screen
    password='<$CRM_ADMIN_PASSWORD>'
elif [[ -s $password_file ]]; then
    password_note="in ${password_file#"$root"/}"
    password=$(<"$password_file")
else
    password_note="${password_file#"$root"/} (not written yet)"
    password='<password>'
fi
elapsed=$(awk -v a="$started_at" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

cat <<EOF

CRM is up (${elapsed}s).
  API:      $gateway/api/v1
  Docs:     $gateway/docs
  Admin:    $CRM_ADMIN_EMAIL, password $password_note
  Log in:   curl -s -X POST $gateway/api/v1/auth/login -H 'Content-Type: application/json' \\
              -d '{"email":"$CRM_ADMIN_EMAIL","password":"$password"}'
  Status:   make ps     Logs: make logs     Stop: make down
EOF
