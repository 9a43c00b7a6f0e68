# syntax=docker/dockerfile:1
# The operator's command line (crmctl, from crm_common in the base image) with
# the PostgreSQL client tools its backup, verify and restore run (pg_dump,
# pg_restore: 17 from Debian trixie, at least as new as the servers). It serves
# nothing: run it with the services' environment, e.g. the nightly backup
#   crmctl backup --dir /backups --keep-daily 7 --keep-weekly 4
# (deploy/k8s/base/backup-cronjob.yaml, the `backup` service in
# deploy/compose.yaml). From the repository root, once the base is built:
#   docker build -f deploy/docker/crmctl.Dockerfile -t crm/crmctl:0.1.0 .
ARG BASE_IMAGE=crm/base:0.1.0
FROM ${BASE_IMAGE}

RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o crm -g crm -m 0750 /backups

USER 10001:10001
# A one-shot command, not a server: nothing to probe.
HEALTHCHECK NONE
ENTRYPOINT ["crmctl"]
CMD ["--help"]
