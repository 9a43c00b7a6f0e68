#!/usr/bin/env bash
# Make deploy/tools/.venv: jsonschema for deploy/test_deploy.py's Compose
# schema check and kubernetes-validate for its Kubernetes schema check, from
# its own hash-locked requirements.lock (`make lock` regenerates it). Never
# the project's .venv.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
if [[ ! -f .venv/.installed || requirements.lock -nt .venv/.installed ]]; then
    .venv/bin/pip install --quiet --require-hashes -r requirements.lock
    touch .venv/.installed
fi
