#!/usr/bin/env bash
# Run once by the postgres image on an empty data directory
# (/docker-entrypoint-initdb.d): one database per service, as `make databases`
# creates them locally. Each service migrates its own schema when it starts.
set -euo pipefail
for service in customers sales notifications reporting gateway; do
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -c "CREATE DATABASE crm_$service OWNER \"$POSTGRES_USER\""
done
