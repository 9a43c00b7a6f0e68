"""End-to-end: personal data is encrypted at rest in every service's database, and the data keys
rotate while the system keeps running.

The first test reads the databases the way someone with a stolen backup would:
every row of every table of every service, as text (after checking that it
finds there what is stored in clear on purpose, so "nothing found" means
something). The second drives key rotation with crmctl's own functions
(crm_common.crmctl) against the running system's key file and broker, as an
operator's ``crmctl`` would.
"""
import json
import secrets
from urllib.parse import urlparse

import eventlet
import psycopg2
import pytest
import requests

from api_helpers import phone, unique
from conftest import wait_until
from crm_common.crmctl import keys as crmctl_keys
from crm_common.crmctl import rotation as crmctl_rotation
from crm_common.crmctl.common import SERVICES
from crm_common.testing_system import RABBIT_API, RabbitAdmin

from test_webhooks import SECRET, Receiver


def e164(number):
    """What the API stores for a number written like api_helpers.phone()."""
    return number.replace(" ", "")


def spellings(value):
    """The forms a value could take in a database: as is, and inside JSON (escaped or not)."""
    return {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}


def database_text(system):
    """{"service.table": every row of the table as PostgreSQL prints it}, for every service."""
    dumps = {}
    for service in SERVICES:
        url = system.env[f"CRM_{service.upper()}_DB_URL"].replace("postgresql+psycopg2://", "postgresql://")
        connection = psycopg2.connect(url)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT table_name FROM information_schema.tables "
                               "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")
                for (table,) in cursor.fetchall():
                    # A row cast to text holds every column, JSON and arrays included.
                    cursor.execute(f'SELECT t::text FROM "{table}" t')
                    dumps[f"{service}.{table}"] = "\n".join(row for (row,) in cursor.fetchall())
        finally:
            connection.close()
    return dumps


def leaks(system, values):
    """[(value, "service.table")] for every plaintext value found anywhere in the databases."""
    found = []
    for where, text in database_text(system).items():
        for value in values:
            if any(form in text for form in spellings(value)):
                found.append((value, where))
    return found


def events_consumed(system):
    """Every outbox sent and every queue of the system's vhost empty (nothing ready or unacknowledged)."""
    for service in SERVICES:
        url = system.env[f"CRM_{service.upper()}_DB_URL"].replace("postgresql+psycopg2://", "postgresql://")
        connection = psycopg2.connect(url)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM crm_outbox WHERE published_at IS NULL")
                if cursor.fetchone()[0]:
                    return False
        finally:
            connection.close()
    rabbit = RabbitAdmin(RABBIT_API)
    vhost = urlparse(system.env["AMQP_URI"]).path.lstrip("/")
    queues = requests.get(f"{rabbit.base}/queues/{vhost}", auth=rabbit.auth, timeout=10).json()
    return all(queue.get("messages", 0) == 0 for queue in queues)


@pytest.fixture
def receiver(admin):
    receiver = Receiver(200)
    created = admin.post("/webhooks", json={"url": receiver.url, "event_types": ["customer.*"], "secret": SECRET,
                                            "allow_private_network": True, "description": "pii at rest"})
    assert created.status_code == 201, created.text
    yield receiver
    admin.delete(f"/webhooks/{created.json()['id']}")
    receiver.close()


def test_personal_data_is_nowhere_in_clear_in_any_database(system, admin, receiver):
    tag = secrets.token_hex(4)
    first_phone, new_phone, contact_phone = phone(), phone(), phone()
    email = f"pii.{tag}@private-mail.example"
    contact_email = f"contact.{tag}@private-mail.example"
    street = f"{tag} Hidden Garden Road 77"
    street_zh = f"秀水街{tag}号"
    id_number = f"11010519491231{secrets.randbelow(10000):04d}"

    created = admin.post("/customers", headers={"Idempotency-Key": f"pii-{tag}"}, json={
        "kind": "company", "name": unique("Pii Company"),
        "contact": {"phones": [first_phone], "emails": [email], "id_number": id_number,
                    "address": {"country": "CN", "city": "Shanghai", "street": street}}})
    assert created.status_code == 201, created.text
    customer = created.json()
    contact = admin.post(f"/customers/{customer['id']}/contacts", json={
        "name": "Zhao Contact", "phones": [contact_phone], "emails": [contact_email]})
    assert contact.status_code == 201, contact.text
    # Adding a contact is a change of the customer: edit the version it made.
    current = admin.get(f"/customers/{customer['id']}")
    updated = admin.patch(f"/customers/{customer['id']}", headers={"If-Match": current.headers["ETag"]}, json={
        "contact": {"phones": [new_phone], "emails": [email], "id_number": id_number,
                    "address": {"country": "CN", "city": "Shanghai", "street": street_zh}}})
    assert updated.status_code == 200, updated.text
    # The same create again with its key: replayed from the gateway's stored (encrypted) answer.
    replayed = admin.post("/customers", headers={"Idempotency-Key": f"pii-{tag}"}, json={
        "kind": "company", "name": customer["name"],
        "contact": {"phones": [first_phone], "emails": [email], "id_number": id_number,
                    "address": {"country": "CN", "city": "Shanghai", "street": street}}})
    assert replayed.status_code == 201 and replayed.json()["id"] == customer["id"]
    # A task about the customer: so that notifications' database holds the customer's id too (see below).
    task = admin.post("/tasks", json={"title": "Call about the offer", "customer_id": customer["id"]})
    assert task.status_code == 201, task.text

    # The webhook got the update (so a delivery with its payload is stored), and every event is consumed.
    wait_until(lambda: any(json.loads(request["body"])["type"] == "customer.updated"
                           and json.loads(request["body"])["data"].get("id") == customer["id"]
                           for request in receiver.requests), 30, message="the customer.updated webhook")
    wait_until(lambda: events_consumed(system), 30, message="every event consumed")

    # A scan that read nothing would find nothing too: first it must find what is stored in clear on
    # purpose, the customer's name where it lives, and its id in every service's database.
    in_clear = leaks(system, [customer["id"], customer["name"]])
    assert (customer["name"], "customers.customers") in in_clear, in_clear
    assert {where.split(".")[0] for value, where in in_clear if value == customer["id"]} == set(SERVICES), in_clear

    values = [e164(first_phone), e164(new_phone), e164(contact_phone), email, contact_email, street, street_zh,
              id_number]
    found = leaks(system, values)
    assert found == [], f"personal data stored in clear: {found}"

    # ... and the API still finds the customer by phone and by email (blind index).
    by_phone = admin.get("/customers", params={"phone": new_phone}).json()["items"]
    by_email = admin.get("/customers", params={"email": email.upper()}).json()["items"]
    assert [c["id"] for c in by_phone] == [customer["id"]]
    assert [c["id"] for c in by_email] == [customer["id"]]
    fetched = admin.get(f"/customers/{customer['id']}").json()
    assert fetched["contact"]["phones"] == [e164(new_phone)]
    assert fetched["contact"]["address"]["street"] == street_zh
    assert fetched["contact"]["id_number"] == id_number


def create_customer(api, tag):
    number, email = phone(), f"rot.{tag}.{secrets.token_hex(3)}@rotation.example"
    created = api.post("/customers", json={"kind": "person", "name": unique(f"Rotation {tag}"),
                                           "contact": {"phones": [number], "emails": [email]}})
    assert created.status_code == 201, created.text
    return created.json()["id"], e164(number), email


def test_data_keys_rotate_while_the_system_writes_and_the_old_key_retires(system, admin):
    key_file = system.env["CRM_DATA_KEYS_FILE"]
    amqp_uri = system.env["AMQP_URI"]
    old_kid = crmctl_keys.describe_keys(key_file)["current"]
    customers = [create_customer(admin, "before") for _ in range(5)]
    wait_until(lambda: events_consumed(system), 30, message="every event consumed")

    # Nothing may be retired while values are under it; nor the current key.
    with pytest.raises(crmctl_keys.CommandFailed, match="current key"):
        crmctl_keys.retire_key(old_kid, key_file, amqp_uri, timeout=30)

    new_kid = crmctl_keys.new_key(key_file)
    assert new_kid != old_kid and crmctl_keys.describe_keys(key_file)["current"] == new_kid
    with pytest.raises(crmctl_keys.CommandFailed, match=f"under {old_kid}"):
        crmctl_keys.retire_key(old_kid, key_file, amqp_uri, timeout=30)

    # Customers keep being created while every service re-encrypts.
    during, stopping = [], []

    def keep_writing():
        while not stopping:
            during.append(create_customer(admin, "during"))

    writer = eventlet.spawn(keep_writing)
    try:
        wait_until(lambda: during, 10, message="a write before the rotation starts")
        results = crmctl_rotation.rotate_keys(amqp_uri, timeout=120)
        written_while_rotating = len(during)
    finally:
        stopping.append(True)
        writer.wait()
    assert written_while_rotating >= 1

    assert crmctl_rotation.problems(results) == [], crmctl_rotation.format_report(results)
    for service in SERVICES:
        assert results[service]["current_key_id"] == new_kid, results[service]
        assert sum(results[service]["remaining"].values()) == 0, results[service]
    assert sum(results["customers"]["reencrypted"].values()) > 0  # the customers' values moved to the new key

    # Events of the last writes are consumed (under the new key) before the old key goes.
    wait_until(lambda: events_consumed(system), 30, message="every event consumed")
    usages = crmctl_keys.retire_key(old_kid, key_file, amqp_uri, timeout=30)
    assert all(old_kid not in usage["keys"] for usage in usages.values())
    assert old_kid not in crmctl_keys.describe_keys(key_file)["key_ids"]

    # Every customer reads back in clear, those written during the rotation too, and is found by phone.
    for customer_id, number, email in customers + during:
        fetched = admin.get(f"/customers/{customer_id}")
        assert fetched.status_code == 200, fetched.text
        assert fetched.json()["contact"]["phones"] == [number]
        assert fetched.json()["contact"]["emails"] == [email]
    _, number, _ = during[-1]
    assert [c["id"] for c in admin.get("/customers", params={"phone": number}).json()["items"]] == [during[-1][0]]

    # Each service recorded the rotation in the audit trail.
    def rotations():
        answer = admin.get("/audit", params={"action": "keys.rotated", "entity_id": new_kid})
        assert answer.status_code == 200, answer.text
        entries = answer.json()["items"]
        return entries if {entry["service"] for entry in entries} >= set(SERVICES) else None

    entries = wait_until(rotations, 30, message="a keys.rotated audit entry from every service")
    entry = next(entry for entry in entries if entry["service"] == "customers")
    assert entry["entity_type"] == "data_keys" and entry["actor_role"] == "system"
    assert entry["detail"]["remaining"] == results["customers"]["remaining"]
