"""The load-test suite, run briefly at a low rate against the test system: every
persona signs in, calls each of its endpoints, and every call answers without
error. It keeps loadtests/ working as the API changes; the numbers of a real
run come from `make loadtest`.

locust runs from its own virtualenv (gevent; the services and these tests run
on eventlet), as a subprocess, writing its stats as CSV.
"""
import csv
import os
import subprocess
from pathlib import Path

import pytest

from conftest import ADMIN_EMAIL, ADMIN_PASSWORD

ROOT = Path(__file__).resolve().parents[1]
LOCUST = ROOT / "loadtests" / ".venv" / "bin" / "locust"
RUN_SECONDS = 25
# Twelve users spread by the personas' weights: each persona gets at least one.
USERS = 12

# What each persona does, as locust names its requests (method, name): each must be called and answer.
ENDPOINTS = {
    "sales rep": [
        ("POST", "/api/v1/auth/login"),
        ("GET", "/api/v1/customers"),
        ("GET", "/api/v1/customers?q={term}"),
        ("POST", "/api/v1/customers"),
        ("GET", "/api/v1/customers/{id}"),
        ("POST", "/api/v1/customers/{id}/followups"),
        ("POST", "/api/v1/opportunities"),
        ("POST", "/api/v1/opportunities/{id}/stage"),
        ("POST", "/api/v1/quotes"),
    ],
    "manager": [
        ("GET", "/api/v1/pipelines"),
        ("GET", "/api/v1/pipelines/{id}/board"),
        ("GET", "/api/v1/opportunities"),
        ("GET", "/api/v1/reports/customers/summary"),
        ("GET", "/api/v1/reports/sales/funnel"),
        ("GET", "/api/v1/reports/sales/forecast"),
        ("GET", "/api/v1/reports/sales/by-owner"),
        ("GET", "/api/v1/reports/sales/by-period"),
        ("GET", "/api/v1/reports/activities"),
    ],
    "support": [
        ("GET", "/api/v1/tasks"),
        ("POST", "/api/v1/tasks"),
        ("POST", "/api/v1/tasks/{id}/complete"),
        ("GET", "/api/v1/notifications"),
        ("GET", "/api/v1/notifications/unread-count"),
        ("POST", "/api/v1/notifications/read-all"),
    ],
    "integration client": [
        ("GET", "/api/v1/customers (API key)"),
        ("GET", "/api/v1/exports/customers"),
        ("POST", "/api/v1/imports/customers"),
    ],
    "AMQP user": [
        ("AMQP", "customers.list_customers"),
        ("AMQP", "customers.get_customer"),
    ],
}


@pytest.fixture(scope="module")
def smoke_run(system, tmp_path_factory):
    """One short locust run against the system: (its stats rows by (method, name), its output)."""
    assert LOCUST.exists(), f"{LOCUST} is missing: run `make loadtest-venv` (make test does it first)"
    out = tmp_path_factory.mktemp("loadtest")
    env = {
        **os.environ,
        "LOADTEST_ADMIN_EMAIL": ADMIN_EMAIL,
        "LOADTEST_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "LOADTEST_ACCOUNTS_PER_ROLE": "2",
        "LOADTEST_AMQP_URI": system.env["AMQP_URI"],
        # Short pauses, so that a run of seconds makes every persona's tasks come round.
        "LOADTEST_THINK_TIME": "0.3,1",
    }
    finished = subprocess.run(
        [str(LOCUST), "-f", "loadtests/locustfile.py", "--headless", "--only-summary",
         "-u", str(USERS), "-r", str(USERS), "-t", f"{RUN_SECONDS}s", "--stop-timeout", "5",
         "--host", system.gateway_url, "--csv", str(out / "smoke")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_SECONDS + 90)
    output = finished.stdout + finished.stderr
    stats_file = out / "smoke_stats.csv"
    assert stats_file.exists(), f"locust wrote no stats (exit {finished.returncode}):\n{output[-5000:]}"
    with open(stats_file, newline="") as handle:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(handle)}
    with open(out / "smoke_failures.csv", newline="") as handle:
        failures = {(row["Method"], row["Name"], row["Error"]): int(row["Occurrences"])
                    for row in csv.DictReader(handle)}
    return rows, failures, output


def sales_lag(error):
    """A deal or quote refused because sales has not yet heard of a customer created a moment
    before: the personas count it as the error it is; the cause (the sales replica filled by
    events only) is the API issue's to remove. Until then it is the one failure a run may show."""
    return "422: " in error and "customer_id" in error


def unexplained(failures, endpoints):
    return {key: count for key, count in failures.items()
            if key[:2] in endpoints and not sales_lag(key[2])}


@pytest.mark.parametrize("persona", ENDPOINTS)
def test_every_endpoint_of_a_persona_is_called_and_answers(smoke_run, persona):
    rows, failures, output = smoke_run
    missing = [endpoint for endpoint in ENDPOINTS[persona] if endpoint not in rows]
    assert not missing, f"the {persona} never called {missing}; locust said:\n{output[-5000:]}"
    answered = [endpoint for endpoint in ENDPOINTS[persona]
                if int(rows[endpoint]["Request Count"]) > int(rows[endpoint]["Failure Count"])]
    assert answered == ENDPOINTS[persona], f"never answered: {set(ENDPOINTS[persona]) - set(answered)}"
    failed = unexplained(failures, ENDPOINTS[persona])
    assert not failed, f"the {persona}'s requests failed {failed}; locust said:\n{output[-5000:]}"


def test_no_request_of_the_run_failed(smoke_run):
    rows, failures, output = smoke_run
    total = rows[("", "Aggregated")]
    assert int(total["Request Count"]) > 0
    # Every failure is in the stats (a refusal the personas retry is not hidden as a success) ...
    assert int(total["Failure Count"]) == sum(failures.values()), (total, failures)
    # ... and none but the known sales lag.
    failed = {key: count for key, count in failures.items() if not sales_lag(key[2])}
    assert not failed, f"failed: {failed}; locust said:\n{output[-5000:]}"
