"""Duplicate and out-of-order event deliveries change nothing (issue 10).

RabbitMQ delivers at least once, and each event type has its own queue, so a
consumer sees copies (a redelivery after a crash between handling and ack, a
relay that published a row twice) and sees events in another order than they
happened. Two tests of the real system, on the real broker:

- out of order: while reporting is away, a customer is changed twice; its two
  customer.updated events wait in reporting's queue and are put back newest
  first. Reporting must end on the newest.
- duplicates: the events a customer's life and its paid order produced are
  taken from the producers' outboxes and published again, exactly as the
  outbox relay does, every one twice and newest first. The read models,
  reports and audit trail must not move.
"""
import json
import secrets

import psycopg2
from kombu import Connection, Exchange, Producer
from prometheus_client.parser import text_string_to_metric_families

from api_helpers import once_sales_knows, take_from_queue, unique
from conftest import wait_until
from crm_common.crmctl import dlq
from crm_common.outbox import context_headers

# reporting's handler of customer.updated (nameko's service-pool queue name).
REPORTING_UPDATES_QUEUE = "evt-customers-customer.updated--reporting.on_customer_updated"

REPORTING_EVENTS = ("customer.created", "customer.updated", "order.placed", "order.paid")


def outbox_envelopes(system, service, mentioning):
    """Every event ``service`` published that names ``mentioning``, oldest first, as the relay sent it."""
    url = system.env[f"CRM_{service.upper()}_DB_URL"].replace("+psycopg2", "")
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT payload FROM crm_outbox WHERE published_at IS NOT NULL ORDER BY id")
            envelopes = [json.loads(system.decrypt(payload)) for (payload,) in cursor.fetchall()]
    finally:
        connection.close()
    return [envelope for envelope in envelopes if mentioning in json.dumps(envelope["data"])]


def publish_again(system, envelopes):
    """Publish each envelope onto its producer's event exchange, as crm_common.outbox does."""
    with Connection(system.env["AMQP_URI"]) as connection:
        producer = Producer(connection.channel(), serializer="json")
        for envelope in envelopes:
            exchange = Exchange(f"{envelope['producer']}.events", type="topic", durable=True)
            producer.publish(envelope, exchange=exchange, routing_key=envelope["type"], declare=[exchange],
                             headers=context_headers(envelope), delivery_mode=2, retry=True)


def consumed_by_reporting(system, types=REPORTING_EVENTS):
    """Events of ``types`` this reporting instance has finished with, whatever the outcome
    (applied, skipped as already processed, dead-lettered)."""
    total = 0.0
    for family in text_string_to_metric_families(system.metrics("reporting")):
        for sample in family.samples:
            if sample.name == "crm_events_consumed_total" and sample.labels.get("type") in types:
                total += sample.value
    return total


def put_back(uri, queue, messages):
    """Publish taken messages onto ``queue`` again, in the given order, with their headers."""
    with dlq.connect(uri) as connection:
        channel = connection.channel()
        for message in messages:
            channel.basic_publish(dlq.Message(message.body, application_headers=dlq.headers_of(message),
                                              content_type="application/json", content_encoding="utf-8",
                                              delivery_mode=2),
                                  exchange="", routing_key=queue, mandatory=True)
        channel.close()


def region_totals(admin, regions):
    return [admin.get("/reports/customers/summary", params={"region": region}).json()["total"]
            for region in regions]


def new_customer_moved_twice(admin, regions, between=lambda: None):
    """A customer created in regions[0], then moved to regions[1] and regions[2] (versions 1, 2, 3);
    ``between()`` runs after the create has reached reporting, before the moves."""
    created = admin.post("/customers", json={"kind": "company", "name": unique("Redelivery Co"),
                                             "region": regions[0]})
    assert created.status_code == 201, created.text
    wait_until(lambda: region_totals(admin, regions) == [1, 0, 0], 30, interval=0.25,
               message="reporting to have the new customer")
    between()
    etag = created.headers["ETag"]
    for region in regions[1:]:
        moved = admin.patch(f"/customers/{created.json()['id']}", json={"region": region},
                            headers={"If-Match": etag})
        assert moved.status_code == 200, moved.text
        etag = moved.headers["ETag"]
    return created.json()["id"]


def test_an_older_update_arriving_after_a_newer_one_changes_nothing(system, admin):
    uri = system.env["AMQP_URI"]
    regions = [f"reorder-{secrets.token_hex(3)}-{n}" for n in range(3)]
    customer_id = new_customer_moved_twice(admin, regions, between=lambda: system.stop("reporting"))
    try:
        # Both updates wait in reporting's queue; they go back newest first.
        updates = [take_from_queue(uri, REPORTING_UPDATES_QUEUE,
                                   lambda envelope: (envelope or {}).get("data", {}).get("id") == customer_id)
                   for _ in range(2)]
        versions = [dlq.payload_of(message)["data"]["version"] for message in updates]
        assert sorted(versions) == [2, 3], versions
        put_back(uri, REPORTING_UPDATES_QUEUE, sorted(updates, key=lambda m: -dlq.payload_of(m)["data"]["version"]))
    finally:
        system.start("reporting")
    wait_until(lambda: consumed_by_reporting(system, ("customer.updated",)) >= 2, 30, interval=0.25,
               message="reporting to take both updates")
    assert region_totals(admin, regions) == [0, 0, 1]


def reports_consistent(admin):
    response = admin.get("/reports/consistency")
    return response.status_code == 200 and response.json()["consistent"]


def test_duplicate_deliveries_change_nothing(system, admin):
    regions = [f"redeliver-{secrets.token_hex(3)}-{n}" for n in range(3)]
    customer_id = new_customer_moved_twice(admin, regions)
    product = admin.post("/products", json={"sku": f"RDL-{secrets.token_hex(4)}", "name": "Redelivery widget",
                                            "unit": "piece", "list_price": "25.00", "currency": "CNY",
                                            "tax_rate": "0"})
    assert product.status_code == 201, product.text

    order = once_sales_knows(lambda: admin.post("/orders", json={
        "customer_id": customer_id, "lines": [{"product_id": product.json()["id"], "quantity": 4}]}))
    assert order.status_code == 201, order.text
    order_id = order.json()["id"]
    assert admin.post(f"/orders/{order_id}/confirm").status_code == 200
    paid = admin.post(f"/orders/{order_id}/payments", json={"amount": "100.00", "method": "card"})
    assert paid.status_code == 201, paid.text

    def sales():
        """The order's product and its customer in the sales reports (shares left out: they are of all sales)."""
        products = admin.get("/reports/sales/by-product", params={"product_id": product.json()["id"]})
        customers = admin.get("/reports/sales/top-customers", params={"region": regions[2]})
        assert products.status_code == 200 and customers.status_code == 200, (products.text, customers.text)
        return ([{key: row[key] for key in ("quantity", "revenue", "currency")} for row in products.json()["rows"]],
                [row for row in customers.json()["rows"] if row["customer_id"] == customer_id])

    def audit_entries():
        response = admin.get("/audit", params={"entity_id": customer_id, "limit": 100})
        assert response.status_code == 200, response.text
        return sorted(entry["id"] for entry in response.json()["items"])

    def settled():
        paid_in_reports = [row["paid"] for row in sales()[1]] == ["100.00"]
        return region_totals(admin, regions) == [0, 0, 1] and paid_in_reports and reports_consistent(admin)
    wait_until(settled, 30, interval=0.25, message="reporting to hold the customer's last region and the paid order")
    before = {"regions": region_totals(admin, regions), "sales": sales(), "audit": audit_entries()}
    assert before["audit"], "the customer's changes are in the audit trail"

    events = outbox_envelopes(system, "customers", customer_id) + outbox_envelopes(system, "sales", order_id)
    types = [envelope["type"] for envelope in events]
    assert {"customer.created", "customer.updated", "order.placed", "order.paid"} <= set(types), types
    assert types.count("customer.updated") >= 2, types  # two region moves: v2 and v3
    # Newest first, each twice: the oldest update (and the create) also arrive after the newest.
    redelivered = [envelope for envelope in reversed(events) for _ in range(2)]
    to_reporting = sum(1 for envelope in redelivered if envelope["type"] in REPORTING_EVENTS)
    baseline = consumed_by_reporting(system)
    publish_again(system, redelivered)
    wait_until(lambda: consumed_by_reporting(system) >= baseline + to_reporting, 30, interval=0.25,
               message=f"reporting to take the {to_reporting} redelivered events")

    after = {"regions": region_totals(admin, regions), "sales": sales(), "audit": audit_entries()}
    assert after == before
    assert reports_consistent(admin), admin.get("/reports/consistency").json()
    customer = admin.get(f"/customers/{customer_id}").json()
    assert customer["region"] == regions[2]
    order = admin.get(f"/orders/{order_id}").json()
    assert (order["paid_amount"], order["payment_status"]) == ("100.00", "paid")
