# shellcheck shell=bash
# Shared by the scripts in this folder: sourced, never run.
#
# One place for the defaults of the environment the services run with, so
# `make up`, `make ps` and `make test` can never disagree about a port or a URL.
# Every default is applied only when the variable is unset or empty: whatever
# the caller exported wins.

# Services in start order: the gateway last, because it calls all the others.
CRM_SERVICES=(customers sales notifications reporting gateway)

# nameko entrypoint classes, by service.
# shellcheck disable=SC2034 # used by the scripts that source this file
declare -A CRM_SERVICE_CLASS=(
    [customers]=CustomersService
    [sales]=SalesService
    [notifications]=NotificationsService
    [reporting]=ReportingService
    [gateway]=GatewayService
)

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The port a service's HTTP endpoints (/health, /metrics) listen on.
service_http_port() {
    local var
    if [[ $1 == gateway ]]; then var=CRM_GATEWAY_PORT; else var="CRM_${1^^}_HTTP_PORT"; fi
    printf '%s' "${!var}"
}

# Export the runtime environment of the services, keeping what is already set.
crm_export_env() {
    local root=$1 svc var
    : "${CRM_DB:=sqlite}"
    : "${AMQP_URI:=amqp://guest:guest@127.0.0.1:5672/}"
    : "${CRM_VAR_DIR:=$root/var}"
    : "${CRM_GATEWAY_PORT:=8000}"
    : "${CRM_CUSTOMERS_HTTP_PORT:=8101}"
    : "${CRM_SALES_HTTP_PORT:=8102}"
    : "${CRM_NOTIFICATIONS_HTTP_PORT:=8103}"
    : "${CRM_REPORTING_HTTP_PORT:=8104}"
    : "${CRM_ADMIN_EMAIL:=admin@example.com}"
    export CRM_DB AMQP_URI CRM_VAR_DIR CRM_GATEWAY_PORT CRM_ADMIN_EMAIL \
        CRM_CUSTOMERS_HTTP_PORT CRM_SALES_HTTP_PORT CRM_NOTIFICATIONS_HTTP_PORT CRM_REPORTING_HTTP_PORT
    case $CRM_DB in sqlite|postgres) ;; *) die "CRM_DB must be sqlite or postgres, not '$CRM_DB'" ;; esac
    for svc in "${CRM_SERVICES[@]}"; do
        var="CRM_${svc^^}_DB_URL"
        if [[ -z ${!var:-} ]]; then
            if [[ $CRM_DB == postgres ]]; then
                printf -v "$var" '%s' "postgresql+psycopg2://postgres@127.0.0.1:5432/crm_$svc"
            else
                printf -v "$var" '%s' "sqlite:///$CRM_VAR_DIR/$svc.db"
            fi
        fi
        export "${var?}"
    done
}

# Is the process alive? A zombie is not: our services are reparented when the
# shell that started them exits, and where nothing reaps them (some
# containers) an exited service lingers as a zombie that kill -0 still finds.
pid_alive() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ $state != Z ]]
}

# The pid in a pid file, if it names a live process that is one of our
# services. The command-line check matters: after a reboot or a kill -9 the
# pid may have been reused by an unrelated process, which we must neither
# mistake for a running service nor signal.
live_service_pid() {
    local pidfile=$1 svc=$2 pid cmdline
    [[ -r $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    pid_alive "$pid" || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *nameko* && $cmdline == *"$svc.service:"* ]] || return 1
    printf '%s' "$pid"
}

# Extra instances of a service (`make scale`) are named <service>-<k>, k >= 2,
# with var/<service>-<k>.pid and .log; instance 1 is the one `make up` starts.
instance_service() { printf '%s' "${1%-[0-9]*}"; }

# The HTTP port of instance k of a service: its base port + 10 * (k - 1).
instance_http_port() {
    local base
    base=$(service_http_port "$1")
    printf '%s' $((base + 10 * (${2:-1} - 1)))
}

# stop_instances GRACE PIDFILE...: SIGTERM every live instance named by the pid
# files (all at once, so they shut down in parallel), wait up to GRACE seconds
# (nameko finishes the requests in hand and hands back the rest), SIGKILL what
# still runs, and remove the pid files.
stop_instances() {
    local grace=$1 pidfile name pid deadline
    shift
    local -A stopping=()
    for pidfile in "$@"; do
        name=$(basename "$pidfile" .pid)
        if pid=$(live_service_pid "$pidfile" "$(instance_service "$name")"); then
            kill -TERM "$pid" 2>/dev/null || true
            stopping[$name]=$pid
            log "$name: stopping (pid $pid)"
        else
            log "$name: not running (stale $pidfile)"
        fi
    done
    _any_alive() {
        for name in "${!stopping[@]}"; do pid_alive "${stopping[$name]}" && return 0; done
        return 1
    }
    deadline=$((SECONDS + grace))
    while _any_alive && ((SECONDS < deadline)); do sleep 0.2; done
    for name in "${!stopping[@]}"; do
        if pid_alive "${stopping[$name]}"; then
            log "$name: still running after ${grace}s, SIGKILL"
            kill -KILL "${stopping[$name]}" 2>/dev/null || true
        fi
    done
    # SIGKILL is not instant either; ports are free only once the process is gone.
    deadline=$((SECONDS + 5))
    while _any_alive && ((SECONDS < deadline)); do sleep 0.2; done
    rm -f "$@"
}

# wait_until SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.5 s until it
# succeeds or the deadline passes (then return 1). Every wait in these scripts
# goes through here so none of them can hang for ever.
wait_until() {
    local seconds=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "timed out after ${seconds}s waiting for $what"
            return 1
        fi
        sleep 0.5
    done
}

# Installing and starting system services needs root; a developer who is not
# root but has sudo gets it asked for, nobody else gets a half-done setup.
as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "'$*' needs root (and sudo is not installed)"
    fi
}

# apt-get update runs at most once per script run: it is slow, and a fresh
# machine needs it before the first install.
_APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || die "$* missing and no apt-get to install it with: install it by hand"
    if ((!_APT_UPDATED)); then
        log "apt-get update"
        as_root apt-get update -qq
        _APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}
