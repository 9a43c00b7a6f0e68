# syntax=docker/dockerfile:1
# The base every CRM image builds on: Python, the locked dependencies in
# /opt/venv, the shared kernel crm_common (with the crmctl command), the
# entrypoint crm-service and the user 10001. It runs nothing by itself; the
# images of the five services (<service>.Dockerfile) and of crmctl
# (crmctl.Dockerfile) add their own part on top. Built from the repository root:
#   docker build -f deploy/docker/base.Dockerfile -t crm/base:0.1.0 .
# The Debian release is pinned (trixie) rather than left to the python:3.11-slim
# tag: crmctl.Dockerfile installs its postgresql-client from it, and pg_dump
# must be at least as new as the server it dumps (PostgreSQL 16 in
# deploy/compose.yaml and deploy/k8s; trixie brings 17).
FROM python:3.11-slim-trixie

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CRM_BIND_HOST=0.0.0.0 \
    CRM_VAR_DIR=/var/lib/crm \
    PATH=/opt/venv/bin:$PATH

# Dependencies first (their layer survives code changes): exactly the locked
# files, setuptools included, as `make venv` installs them.
COPY requirements.lock /tmp/requirements.lock
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes -r /tmp/requirements.lock \
    && rm /tmp/requirements.lock

WORKDIR /app
COPY services/common services/common
# No dependencies (all locked above), built with the locked setuptools.
RUN pip install --no-deps --no-build-isolation services/common
COPY deploy/docker/crm-service.py /usr/local/bin/crm-service

# Fixed uid/gid so Kubernetes' runAsNonRoot can verify it. The images on top
# still install their own part as root, then switch to it with USER 10001.
RUN groupadd --system --gid 10001 crm \
    && useradd --system --uid 10001 --gid crm --home-dir /var/lib/crm --no-create-home crm \
    && install -d -o crm -g crm -m 0750 /var/lib/crm
