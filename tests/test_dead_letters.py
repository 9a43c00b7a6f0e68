"""Dead letters end to end: a poison event ends in the dead-letter queue of the service whose
handler refuses it, is counted, listed by `crmctl dlq list` and replayed by `crmctl dlq replay`;
a dead-lettered event the handler accepts is applied exactly once when replayed."""
import secrets

from nameko.amqp.publish import Publisher
from nameko.standalone.events import get_event_exchange
from prometheus_client.parser import text_string_to_metric_families

from api_helpers import take_from_queue, unique
from conftest import wait_until

from crm_common.consumer import ATTEMPTS_HEADER, dead_letter_queue_name
from crm_common.context import RequestContext
from crm_common.crmctl import dlq
from crm_common.crmctl.common import SERVICES
from crm_common.events import make_envelope
from crm_common.outbox import context_headers

# reporting's handler of customer.created (nameko's service-pool queue name).
REPORTING_QUEUE = "evt-customers-customer.created--reporting.on_customer_created"


def consumed(system, instance, outcome, event_type="customer.created"):
    """crm_events_consumed_total{service=instance, type, outcome} on the instance's /metrics."""
    for family in text_string_to_metric_families(system.metrics(instance)):
        for sample in family.samples:
            if sample.name == "crm_events_consumed_total" and sample.labels == {
                    "service": instance, "type": event_type, "outcome": outcome}:
                return sample.value
    return 0.0


def listed(system, service, event_id):
    """What `crmctl dlq list` shows of ``event_id`` in ``service``'s dead-letter queue."""
    found = dlq.list_dead_letters([service], uri=system.env["AMQP_URI"])[service]["messages"]
    return [entry for entry in found if entry["event_id"] == event_id]


def publish_as_customers(system, envelope):
    """What the customers service's outbox relay sends."""
    config = {"AMQP_URI": system.env["AMQP_URI"]}
    exchange = get_event_exchange("customers", config)
    Publisher(config["AMQP_URI"], serializer="json").publish(
        envelope, exchange=exchange, routing_key=envelope["type"],
        extra_headers=context_headers(envelope), declare=[exchange])


def test_a_poison_event_is_dead_lettered_counted_listed_and_replayed(system):
    uri = system.env["AMQP_URI"]
    before = consumed(system, "reporting", "dead_letter")
    # A customer.created reporting can never read (no version, stage or creation time).
    poison = make_envelope("customers", "customer.created", {"id": secrets.token_hex(8), "name": "Poison Person"},
                           RequestContext.system())
    publish_as_customers(system, poison)
    try:
        (entry,) = wait_until(lambda: listed(system, "reporting", poison["event_id"]), 15,
                              interval=0.2, message="the poison event in crm.dead-letter.reporting")
        assert entry["handler"] == "reporting.on_customer_created"
        assert entry["queue"] == REPORTING_QUEUE
        assert entry["type"] == "customer.created" and entry["producer"] == "customers"
        assert entry["occurred_at"] == poison["occurred_at"]
        assert entry["attempts"] == 1  # refused as invalid: no retries, it would be refused again
        assert entry["replays"] == 0
        assert "ValidationFailed" in entry["error"]
        assert "Poison Person" not in repr(entry)  # metadata only, never the data
        wait_until(lambda: consumed(system, "reporting", "dead_letter") == before + 1, 10, interval=0.2,
                   message="the dead letter counted on reporting's /metrics")
        # Sales' customer replica refuses it too: each service has a dead-letter queue of its own.
        (in_sales,) = wait_until(lambda: listed(system, "sales", poison["event_id"]), 15, interval=0.2,
                                 message="the poison event in crm.dead-letter.sales")
        assert in_sales["handler"] == "sales.on_customer_created"

        # Nothing fixed: the replay reaches reporting's handler only, and is dead-lettered again.
        done = dlq.replay(["reporting"], event_id=poison["event_id"], uri=uri)
        assert [item["replayed_to"] for item in done] == [REPORTING_QUEUE]
        (entry,) = wait_until(lambda: [item for item in listed(system, "reporting", poison["event_id"])
                                       if item["replays"] == 1], 15, interval=0.2,
                              message="the replayed poison event dead-lettered again")
        assert entry["attempts"] == 1  # a fresh round of attempts, and the replay counted
        wait_until(lambda: consumed(system, "reporting", "dead_letter") == before + 2, 10, interval=0.2,
                   message="the second dead letter counted")
    finally:
        # Other handlers of customer.created (sales' replica) may have given up on it too.
        dlq.purge(SERVICES, event_id=poison["event_id"], uri=uri)
    assert all(listed(system, service, poison["event_id"]) == [] for service in SERVICES)


def dead_letter_by_hand(uri, message, copies):
    """Put ``message`` into reporting's dead-letter queue with the headers its handler would set."""
    headers = dict(dlq.headers_of(message), **{
        ATTEMPTS_HEADER: 3,
        "x-crm-original-queue": REPORTING_QUEUE,
        "x-crm-original-exchange": "customers.events",
        "x-crm-handler": "reporting.on_customer_created",
        "x-crm-error": "OperationalError('the database was away')",
    })
    name = dead_letter_queue_name("reporting")
    with dlq.connect(uri) as connection:
        channel = connection.channel()
        channel.queue_declare(name, durable=True, auto_delete=False)
        for _ in range(copies):
            channel.basic_publish(dlq.Message(message.body, application_headers=headers,
                                              content_type="application/json", content_encoding="utf-8",
                                              delivery_mode=2),
                                  exchange="", routing_key=name, mandatory=True)
        channel.close()


def test_a_replayed_event_the_handler_accepts_is_applied_exactly_once(system, admin):
    uri = system.env["AMQP_URI"]
    region = f"dlq-region-{secrets.token_hex(3)}"

    def summary_total():
        response = admin.get("/reports/customers/summary", params={"region": region})
        assert response.status_code == 200, response.text
        return response.json()["total"]

    # Reporting is away while a customer is created, and its customer.created ends, twice
    # (as after a crash between publish and ack), in reporting's dead-letter queue.
    system.stop("reporting")
    try:
        created = admin.post("/customers", json={"kind": "company", "name": unique("DLQ Co"), "region": region})
        assert created.status_code == 201, created.text
        customer_id = created.json()["id"]
        message = take_from_queue(uri, REPORTING_QUEUE, lambda envelope: (envelope or {}).get("data", {}).get(
            "id") == customer_id)
        dead_letter_by_hand(uri, message, copies=2)
    finally:
        system.start("reporting")
    event_id = dlq.payload_of(message)["event_id"]
    assert [entry["attempts"] for entry in listed(system, "reporting", event_id)] == [3, 3]
    assert summary_total() == 0  # the event's effect did not happen

    done = dlq.replay(["reporting"], event_id=event_id, uri=uri)
    assert [entry["replayed_to"] for entry in done] == [REPORTING_QUEUE, REPORTING_QUEUE]
    wait_until(lambda: consumed(system, "reporting", "ok") >= 2, 15, interval=0.2,
               message="both copies handled")
    assert summary_total() == 1  # applied once: the second copy was a redelivery
    assert listed(system, "reporting", event_id) == []
    assert consumed(system, "reporting", "dead_letter") == 0
