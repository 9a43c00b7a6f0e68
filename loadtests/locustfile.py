"""A first load scenario: a sales rep who lists, opens and creates customers.

Run it from its own virtualenv (locust runs on gevent, the services on
eventlet): `make loadtest-venv`, then for example

    loadtests/.venv/bin/locust -f loadtests/locustfile.py --headless \
        -u 20 -r 5 -t 1m --host http://127.0.0.1:8000

LOADTEST_EMAIL / LOADTEST_PASSWORD name the account to log in with (the
admin of `make up` by default: the password is in var/admin-password).
Every locust user signs in as that one account, and the gateway limits each
account to CRM_RATE_LIMIT_PER_MINUTE requests (default 1200): about 25 users
at this wait time. For more, start the gateway with a higher limit (or 0: off).
The full persona suite, load shapes and SLO gate are tracked in the load
testing issue.
"""
import os
import random
from pathlib import Path

from locust import between, task
from locust.contrib.fasthttp import FastHttpUser


def _password():
    if os.environ.get("LOADTEST_PASSWORD"):
        return os.environ["LOADTEST_PASSWORD"]
    return (Path(__file__).resolve().parents[1] / "var" / "admin-password").read_text().strip()


class SalesRep(FastHttpUser):
    wait_time = between(0.5, 2)

    def on_start(self):
        response = self.client.post("/api/v1/auth/login", json={
            "email": os.environ.get("LOADTEST_EMAIL", "admin@example.com"),
            "password": _password(),
        })
        self.headers = {"Authorization": "Bearer " + response.json()["access_token"]}
        self.customer_ids = []

    @task(5)
    def list_customers(self):
        response = self.client.get("/api/v1/customers?limit=20", headers=self.headers,
                                   name="/api/v1/customers")
        if response.status_code == 200:
            self.customer_ids = [c["id"] for c in response.json()["items"]] or self.customer_ids

    @task(3)
    def open_customer(self):
        if self.customer_ids:
            self.client.get(f"/api/v1/customers/{random.choice(self.customer_ids)}",
                            headers=self.headers, name="/api/v1/customers/{id}")

    @task(1)
    def create_customer(self):
        self.client.post("/api/v1/customers", headers=self.headers, json={
            "kind": "person", "name": f"Load Test {random.randint(0, 10**9)}",
        })
