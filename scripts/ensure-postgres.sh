#!/usr/bin/env bash
# Make sure PostgreSQL answers on 127.0.0.1:5432 and lets user postgres in over
# TCP without a password, which is how the services (CRM_DB=postgres) and the
# tests connect. A server that already does is used as it is; otherwise the
# Debian cluster is installed, configured and started here.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

WAIT=${CRM_SERVICE_WAIT_SECONDS:-120}
# -w on every psql: never stop to prompt for a password, fail instead.
export PGCONNECT_TIMEOUT=3

server_ok() {
    pg_isready -q -h 127.0.0.1 -p 5432 \
        && psql -w -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1
}

# The client tools come first: they are how we tell whether a server answers,
# and a server may answer that is not ours to install (another container).
if ! command -v psql >/dev/null || ! command -v pg_isready >/dev/null; then
    apt_install postgresql-client
fi

if server_ok; then
    log "PostgreSQL: already running, accepts postgres@127.0.0.1:5432"
    exit 0
fi

compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || apt_install postgresql

# The newest installed major version, e.g. 15 on Debian 12.
version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
[[ -n $version ]] || die "no cluster under /etc/postgresql: create one with pg_createcluster"
conf_dir=/etc/postgresql/$version/main
[[ -d $conf_dir ]] || die "no cluster $version/main under /etc/postgresql"
# shellcheck disable=SC2016 # awk program, not shell
port=$(as_root awk -F'[[:space:]=]+' '$1 == "port" { print $2 }' "$conf_dir/postgresql.conf")
[[ ${port:-5432} == 5432 ]] || die "cluster $version/main is configured for port $port, not 5432: another server may own 5432"

# Debian's default asks TCP clients for a password. This is a development and
# CI machine: trust connections from the loopback address only, and put the
# lines first because pg_hba.conf is matched top-down.
hba=$conf_dir/pg_hba.conf
hba_changed=0
if ! as_root grep -Eq '^[[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
    log "PostgreSQL: trusting loopback TCP connections in $hba"
    as_root sed -i '0,/^[[:space:]]*[^#[:space:]]/s//# Added by scripts\/ensure-postgres.sh: passwordless TCP from loopback for development.\nhost all all 127.0.0.1\/32 trust\nhost all all ::1\/128 trust\n&/' "$hba"
    # A file of comments only has no first rule to insert before: append.
    if ! as_root grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
        printf '%s\n' 'host all all 127.0.0.1/32 trust' 'host all all ::1/128 trust' | as_root tee -a "$hba" >/dev/null
    fi
    hba_changed=1
fi

# Start the cluster, or reload it if it runs and only the access rules changed.
# --skip-systemctl-redirect: there may be no systemd to hand the start to.
if as_root pg_ctlcluster "$version" main status >/dev/null 2>&1; then
    if ((hba_changed)); then
        as_root pg_ctlcluster "$version" main reload
    fi
else
    log "PostgreSQL: starting cluster $version/main"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi

wait_until "$WAIT" "PostgreSQL on 127.0.0.1:5432" server_ok \
    || die "PostgreSQL does not accept postgres@127.0.0.1:5432; see /var/log/postgresql/"
log "PostgreSQL: running ($version/main)"
