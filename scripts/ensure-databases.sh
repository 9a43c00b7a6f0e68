#!/usr/bin/env bash
# Create the named PostgreSQL databases (owner postgres) that do not exist yet.
#   scripts/ensure-databases.sh crm_customers crm_sales ...
# Connects as postgres to 127.0.0.1:5432 unless PGHOST/PGPORT/PGUSER say
# otherwise; run scripts/ensure-postgres.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

(($#)) || die "usage: $0 DATABASE..."
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5}

for name in "$@"; do
    # The name goes into SQL as an identifier: accept plain ones only.
    [[ $name =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "not a plain database name: '$name'"
    if [[ $(psql -w -d postgres -Atqc "select 1 from pg_database where datname = '$name'") == 1 ]]; then
        log "database $name: exists"
    else
        psql -w -d postgres -qc "create database \"$name\" owner postgres" >/dev/null
        log "database $name: created"
    fi
done
