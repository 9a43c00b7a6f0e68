#!/usr/bin/env bash
# The project's test run: `make test`, and CI through .ci/run. Runs each test
# suite that exists, in its own `nameko test` process (nameko applies the
# eventlet monkey patch before pytest imports anything; plain pytest hangs on
# the integration tests), keeps going after a failing suite so one run shows
# every failure, and ends with a summary. Exits non-zero if any suite failed.
# Extra arguments go to every suite: scripts/run-tests.sh -x -k customer
# Needs `make venv rabbitmq postgres` first; `make test` does that.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

# Where the tests find the servers (tests/conftest.py reads these too).
export CRM_TEST_PG_URL=${CRM_TEST_PG_URL:-postgresql+psycopg2://postgres@127.0.0.1:5432}
export AMQP_URI=${AMQP_URI:-amqp://guest:guest@127.0.0.1:5672/}
export RABBIT_CTL_URI=${RABBIT_CTL_URI:-http://guest:guest@127.0.0.1:15672}
# The end-to-end suite runs a second system beside the session's at times, on a
# server that may allow only 100 connections: the services keep few idle ones.
export CRM_DB_IDLE_CONNECTIONS=${CRM_DB_IDLE_CONNECTIONS:-2}
# A hung suite must not eat CI's whole time budget. (--foreground keeps the
# suite in our process group, so Ctrl-C still reaches it.)
SUITE_TIMEOUT=${CRM_TEST_SUITE_TIMEOUT:-1800}

[[ -x .venv/bin/nameko ]] || die ".venv is missing: run 'make venv'"

# nameko's pytest plugin takes the broker from options, not the environment.
NAMEKO_TEST=(.venv/bin/nameko test --amqp-uri "$AMQP_URI" --rabbit-ctl-uri "$RABBIT_CTL_URI")

total_passed=0 total_failed=0 total_skipped=0
summary=()
any_failed=0
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

# count WORD FILE: the number before WORD in pytest's closing line, e.g.
# "==== 3 failed, 120 passed, 2 skipped in 9.81s ====".
count() {
    local line
    line=$(grep -E '[0-9]+ (passed|failed|errors?|skipped|deselected|xfailed|xpassed|warnings?)\b.* in [0-9.]+s' "$2" | tail -n 1 || true)
    grep -oE "[0-9]+ $1\b" <<<"$line" | grep -oE '^[0-9]+' || echo 0
}

# run_suite LABEL COMMAND...
run_suite() {
    local label=$1 out rc=0 passed failed errors skipped deselected status ok=0
    shift
    out=$workdir/$((${#summary[@]})).out
    log ""
    log "===== $label"
    timeout --foreground --kill-after=30 "$SUITE_TIMEOUT" "$@" 2>&1 | tee "$out" || rc=${PIPESTATUS[0]}
    passed=$(count passed "$out")
    failed=$(count failed "$out")
    errors=$(count 'errors?' "$out")
    skipped=$(count skipped "$out")
    deselected=$(count deselected "$out")
    failed=$((failed + errors))
    # pytest exits 5 when no test ran. A suite that exists and collects nothing
    # has lost its tests (a renamed file, a broken conftest): a failure. Only a
    # filter that deselected every test of this suite (ARGS='-k name') is not.
    case $rc in
        0) status=ok ok=1 ;;
        5) if ((deselected > 0)); then
               status="none selected" ok=1
           else
               status="FAILED: no tests collected"
           fi ;;
        124 | 137) status="TIMED OUT after ${SUITE_TIMEOUT}s" ;;
        *) status="FAILED (exit $rc)" ;;
    esac
    if ((!ok)); then
        any_failed=1
        # A suite that died before reporting (import error, timeout) still
        # counts as a failure in the totals.
        ((failed > 0)) || failed=1
    fi
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
    total_skipped=$((total_skipped + skipped))
    summary+=("$(printf '  %-30s %-28s %s passed, %s failed, %s skipped' "$label" "$status" "$passed" "$failed" "$skipped")")
}

# Unit and service-interface tests, one suite per package.
for pkg in common "${CRM_SERVICES[@]}"; do
    if [[ -d services/$pkg/tests ]]; then
        run_suite "services/$pkg/tests" "${NAMEKO_TEST[@]}" "services/$pkg/tests" "$@"
    fi
done
# The Prometheus config, recording and alert rules: promtool's checks and unit
# tests (tests/test_prometheus.py runs a real Prometheus against the system).
if [[ -d deploy/prometheus ]]; then
    run_suite "deploy/prometheus" "${NAMEKO_TEST[@]}" deploy/prometheus "$@"
fi
# Dockerfile, compose.yaml and the Kubernetes manifests, validated offline
# (jsonschema for the Compose schema and kubernetes-validate for the Kubernetes
# schemas live in their own deploy/tools/.venv).
if [[ -f deploy/test_deploy.py ]]; then
    deploy/tools/ensure-venv.sh || log "warning: deploy/tools/.venv not made; the Compose and Kubernetes schema tests will fail"
    run_suite "deploy/test_deploy.py" "${NAMEKO_TEST[@]}" deploy/test_deploy.py "$@"
fi
# The load-test gate, shapes and report on synthetic data (seconds, no
# system), in locust's own venv (gevent), which `make test` makes.
if [[ -d loadtests/crmload/tests ]]; then
    run_suite "loadtests/crmload/tests" loadtests/.venv/bin/python -m pytest -p no:cacheprovider \
        loadtests/crmload/tests "$@"
fi
# Cross-service and end-to-end tests.
if [[ -d tests ]]; then
    run_suite "tests" "${NAMEKO_TEST[@]}" tests "$@"
fi

log ""
log "===== summary"
((${#summary[@]})) || log "  no test suites found"
for line in "${summary[@]}"; do log "$line"; done
# The one closing line, counted over all suites.
echo "tests: $total_passed passed, $total_failed failed, $total_skipped skipped"
exit "$any_failed"
