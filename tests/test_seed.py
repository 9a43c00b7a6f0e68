"""`make seed` (loadtests/seed.py): the data it reports is there through the API, and a second run with
the same seed finds exactly that data and adds nothing."""
import csv
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ADMIN_EMAIL, ADMIN_PASSWORD, login, running_system

SEED_SCRIPT = Path(__file__).resolve().parents[1] / "loadtests" / "seed.py"
CUSTOMERS = 200
# Its own seed: phones and external ids derive from it, so they match no other test's customers.
SEED = 913


@pytest.fixture(scope="module")
def seeded_system(tmp_path_factory):
    """A system of its own: the seeded users, tasks and orders would otherwise show in the lists that
    later end-to-end tests check (a manager's open tasks, a team's records)."""
    with running_system("seed", workdir=tmp_path_factory.mktemp("seed")) as running:
        yield running


@pytest.fixture(scope="module")
def seed_admin(seeded_system):
    return login(seeded_system, ADMIN_EMAIL, ADMIN_PASSWORD)


def run_seed(system, tmp_path, name):
    summary = tmp_path / f"{name}.json"
    finished = subprocess.run(
        [sys.executable, str(SEED_SCRIPT), "--host", system.gateway_url, "--customers", str(CUSTOMERS),
         "--seed", str(SEED), "--threads", "8", "--summary", str(summary)],
        env={**os.environ, "SEED_ADMIN_EMAIL": ADMIN_EMAIL, "SEED_ADMIN_PASSWORD": ADMIN_PASSWORD},
        capture_output=True, text=True, timeout=180)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "seconds=" in finished.stdout and "records_per_second=" in finished.stdout
    return json.loads(summary.read_text())


def seeded_customers(admin):
    response = admin.get("/exports/customers", params={"tag": f"seed-{SEED}", "sort": "name"}, timeout=60)
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def every(admin, path, **params):
    """All items of a paged list."""
    items, cursor = [], None
    while True:
        page = admin.get(path, params={"limit": 200, **params, **({"cursor": cursor} if cursor else {})}).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def made(summary, entity):
    return summary["counts"].get(entity, {}).get("made", 0)


def load_seed_module():
    spec = importlib.util.spec_from_file_location("seed", SEED_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_creates_what_it_reports_and_a_rerun_adds_nothing(seeded_system, seed_admin, tmp_path):
    system, admin = seeded_system, seed_admin
    first = run_seed(system, tmp_path, "first")
    customers = seeded_customers(admin)
    ids = {customer["id"] for customer in customers}

    assert len(customers) == made(first, "customers") == CUSTOMERS
    assert {customer["kind"] for customer in customers} == {"person", "company"}
    assert any("\u4e00" <= customer["name"][0] <= "\u9fff" for customer in customers), "no Chinese names"
    assert any(customer["name"].isascii() for customer in customers), "no English names"
    # The export writes a leading apostrophe before "+" (a spreadsheet would read a formula).
    phones = [phone.lstrip("'") for customer in customers for phone in customer["phones"].split(", ") if phone]
    assert phones and all(phone.startswith("+") for phone in phones)
    assert any(phone.startswith("+86") for phone in phones)
    assert any(phone.startswith(("+1", "+44")) for phone in phones)
    assert len({customer["owner_id"] for customer in customers}) >= 3, "ownership is not spread"

    companies = [customer["id"] for customer in customers if customer["kind"] == "company"]
    contacts = sum(len(admin.get(f"/customers/{company}/contacts").json()["items"]) for company in companies)
    assert contacts == made(first, "contacts") == len(companies) // 2
    followups = sum(len(every(admin, f"/customers/{customer}/followups")) for customer in ids)
    assert followups == made(first, "followups") == CUSTOMERS

    products = [p for p in every(admin, "/products") if p["sku"].startswith(f"SEED{SEED}-")]
    assert len(products) == made(first, "products")
    opportunities = [o for o in every(admin, "/opportunities") if o["customer_id"] in ids]
    assert len(opportunities) == made(first, "opportunities") == CUSTOMERS // 10
    assert len({o["stage"] for o in opportunities}) >= 3, "opportunities are not spread over the stages"
    orders = [o for o in every(admin, "/orders") if o["customer_id"] in ids]
    assert len(orders) == made(first, "orders") == CUSTOMERS // 10
    assert all(1 <= len(order["lines"]) <= 5 for order in orders)
    assert sum(order["paid_amount"] != "0.00" for order in orders) == made(first, "payments") > 0
    contracts = [c for c in every(admin, "/contracts") if c["customer_id"] in ids]
    assert len(contracts) == made(first, "contracts") == CUSTOMERS // 50

    users = [u for u in every(admin, "/users") if u["email"].startswith(f"seed{SEED}.")]
    assert len(users) == made(first, "users") and {u["role"] for u in users} == {"manager", "sales"}
    reps = [u["id"] for u in users if u["role"] == "sales"]
    tasks = [t for rep in reps for t in every(admin, "/tasks", assignee=rep)
             if t["source"] == "manual" and t["customer_id"] in ids]
    assert len(tasks) == made(first, "tasks") == CUSTOMERS // 20

    # Deterministic: this process (another hash seed) draws the very customers the seeder imported ...
    drawn = {row["external_id"]: row["name"] for row in
             (load_seed_module().customer_row(SEED, n, ["owner"]) for n in range(CUSTOMERS))}
    assert {c["external_id"]: c["name"] for c in customers} == drawn
    # ... and the same seed again finds every record it would make: customers by external id, the
    # rest by Idempotency-Key, whose fingerprint would refuse ("differs") a record drawn otherwise.
    second = run_seed(system, tmp_path, "second")
    outcomes = {(entity, outcome) for entity, counts in second["counts"].items()
                for outcome, count in counts.items() if count}
    assert outcomes == {(entity, "existing") for entity in second["counts"]}, outcomes
    assert second["counts"]["customers"]["existing"] == CUSTOMERS
    assert [c["name"] for c in seeded_customers(admin)] == [c["name"] for c in customers]
