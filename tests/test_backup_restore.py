"""The restore drill: data made through the API, a backup taken while the system serves, the
databases destroyed, the backup restored, and every API listing the same as before.

A system of its own (destroying the databases must not touch the session's
``system`` the other end-to-end tests share). The backup is crmctl's own
function, called with the system's environment, as `crmctl backup` would run.
"""
import secrets
import threading
from contextlib import closing
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from api_helpers import once_sales_knows

from crm_common.crmctl import backup as crmctl_backup
from crm_common.crmctl.common import SERVICES, CommandFailed
from crm_common.testing_system import ADMIN_EMAIL, ADMIN_PASSWORD, login, running_system, wait_until

LISTINGS = ("/customers", "/products", "/opportunities", "/orders", "/quotes", "/contracts", "/tasks",
            "/followups", "/users", "/pipelines")
REPORTS = ("/reports/customers/summary", "/reports/sales/by-product", "/reports/sales/funnel",
           "/reports/sales/by-owner", "/reports/contracts")


@pytest.fixture(scope="module")
def drill_system(tmp_path_factory):
    with running_system("drill", workdir=tmp_path_factory.mktemp("drill")) as running:
        yield running


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def make_world(api):
    now = datetime.now(timezone.utc)
    customers = []
    for n in range(3):
        created = api.post("/customers", json={
            "kind": "company", "name": f"Drill Co {n} {secrets.token_hex(3)}", "region": "east",
            "contact": {"phones": [f"+86 139 {secrets.randbelow(10000):04d} {secrets.randbelow(10000):04d}"],
                        "emails": [f"drill{n}-{secrets.token_hex(3)}@example.com"]}})
        assert created.status_code == 201, created.text
        customer = created.json()
        customers.append(customer)
        contact = api.post(f"/customers/{customer['id']}/contacts",
                           json={"name": f"Contact {n}", "emails": [f"c{n}-{secrets.token_hex(3)}@example.com"]})
        assert contact.status_code == 201, contact.text
        followup = api.post(f"/customers/{customer['id']}/followups", json={
            "type": "call", "occurred_at": iso(now - timedelta(hours=2)), "summary": f"Call {n}",
            "next_followup_at": iso(now + timedelta(days=2))})
        assert followup.status_code == 201, followup.text
    product = api.post("/products", json={"sku": f"DRILL-{secrets.token_hex(4)}", "name": "Drill widget",
                                          "unit": "piece", "list_price": "19.99", "currency": "CNY",
                                          "tax_rate": "13"})
    assert product.status_code == 201, product.text
    product = product.json()
    opportunity = once_sales_knows(lambda: api.post("/opportunities", json={
        "customer_id": customers[0]["id"], "title": "Drill deal", "amount": "1000.00", "currency": "CNY"}))
    assert opportunity.status_code == 201, opportunity.text
    order = once_sales_knows(lambda: api.post("/orders", json={
        "customer_id": customers[1]["id"], "lines": [{"product_id": product["id"], "quantity": 3}]}))
    assert order.status_code == 201, order.text
    confirmed = api.post(f"/orders/{order.json()['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    today = now.date()
    contract = once_sales_knows(lambda: api.post("/contracts", json={
        "customer_id": customers[2]["id"], "title": "Drill maintenance", "value": "500.00", "currency": "CNY",
        "start_date": today.isoformat(), "end_date": (today + timedelta(days=90)).isoformat()}))
    assert contract.status_code == 201, contract.text
    task = api.post("/tasks", json={"title": "Call about the drill", "due_at": iso(now + timedelta(days=1))})
    assert task.status_code == 201, task.text
    return customers


def everything_published(system):
    """Every outbox row of every service published."""
    for service in SERVICES:
        url = system.env[f"CRM_{service.upper()}_DB_URL"]
        with closing(psycopg2.connect(**crmctl_backup.pg_params(url))) as connection, \
                connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM crm_outbox WHERE published_at IS NULL")
            if cursor.fetchone()[0]:
                return False
    return True


def settled(system, api):
    """The events are consumed: nothing left in an outbox, and the reports agree with their sources."""
    def check():
        if not everything_published(system):
            return False
        response = api.get("/reports/consistency")
        assert response.status_code == 200, response.text
        return response.json()["consistent"]
    wait_until(check, 30, interval=0.3, message="every event to be consumed")


def pages(api, path):
    items, cursor = [], None
    while True:
        response = api.get(path, params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, (path, response.text)
        body = response.json()
        items += body["items"]
        cursor = body.get("next_cursor")
        if not cursor:
            return items


def snapshot(api, customers):
    """What a frontend sees: every listing page by page, each customer's contacts and follow-ups, reports."""
    seen = {path: pages(api, path) for path in LISTINGS}
    for customer in customers:
        for part in ("contacts", "followups"):
            path = f"/customers/{customer['id']}/{part}"
            seen[path] = pages(api, path)
        seen[f"/customers/{customer['id']}"] = api.get(f"/customers/{customer['id']}").json()
    for path in REPORTS:
        response = api.get(path)
        assert response.status_code == 200, (path, response.text)
        seen[path] = response.json()
    return seen


def recreate_empty(url):
    database = make_url(url).database
    with closing(psycopg2.connect(**crmctl_backup.pg_params(url, dbname="postgres"))) as admin:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{database}"')


def test_a_restored_system_answers_exactly_as_before(drill_system, tmp_path):
    system = drill_system
    admin = login(system, ADMIN_EMAIL, ADMIN_PASSWORD)
    customers = make_world(admin)
    settled(system, admin)
    before = snapshot(admin, customers)
    assert len(before["/customers"]) == 3 and len(before["/orders"]) == 1 and len(before["/tasks"]) >= 1
    assert len(before["/contracts"]) == 1 and len(before["/opportunities"]) == 1
    for customer in customers:
        assert before[f"/customers/{customer['id']}/contacts"] and before[f"/customers/{customer['id']}/followups"]
    assert all(before[path] for path in REPORTS)

    # The backup runs while the system serves: reads keep going meanwhile.
    stop, answered = threading.Event(), []

    def read():
        while not stop.is_set():
            answered.append(admin.get("/customers").status_code)
    reader = threading.Thread(target=read)
    reader.start()
    try:
        path, manifest = crmctl_backup.backup(tmp_path / "backups", system.env)
    finally:
        stop.set()
        reader.join()
    assert answered and set(answered) == {200}
    assert set(manifest["services"]) == set(SERVICES)
    assert all(entry["engine"] == "postgresql" for entry in manifest["services"].values())
    assert manifest["services"]["customers"]["tables"]["customers"]["rows"] == 3
    assert crmctl_backup.verify(path) == []

    # Disaster: every service stopped, every database gone and made again, empty.
    system.stop_all()
    for service in SERVICES:
        recreate_empty(system.env[f"CRM_{service.upper()}_DB_URL"])

    _, found = crmctl_backup.restore(path, environ=system.env)
    assert found == []
    with pytest.raises(CommandFailed, match="refusing to overwrite"):
        crmctl_backup.restore(path, environ=system.env)  # now they hold rows

    for service in SERVICES:
        system.start(service)
    wait_until(system.ready, 60, interval=0.25, message="gateway /ready after the restore")
    # The same access token as before (the gateway's session rows came back with the backup); a new
    # sign-in would itself change what /users shows.
    after = snapshot(admin, customers)
    for path in before:
        assert after[path] == before[path], path
