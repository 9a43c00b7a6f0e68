"""crm_common.consumer: once-only effects, retries through a delay queue, dead letters."""
import queue
import time

import eventlet.event
import pytest
from kombu import Connection
from nameko.amqp.publish import Publisher
from nameko.extensions import DependencyProvider
from nameko.standalone.events import get_event_exchange
from sqlalchemy import create_engine, select

from crm_common_test_helpers import notes_table, wait_for
from crm_common.consumer import (
    ATTEMPTS_HEADER, dead_letter_queue_name, event_handler, first_delivery,
    processed_events_table, retry_delays,
)
from crm_common.context import Context, RequestContext
from crm_common.db import Database
from crm_common.errors import ValidationFailed
from crm_common.events import make_envelope
from crm_common.outbox import context_headers
from crm_common.testing import memory_session

ACTOR = RequestContext(request_id="req-consumer", user_id="user-5", role="support", team_id="t-2")


def envelope_for(item="x", context=ACTOR):
    return make_envelope("producer", "thing.happened", {"item": item}, context)


def publish_event(rabbit_config, envelope):
    """What the producer's outbox relay sends."""
    exchange = get_event_exchange("producer", rabbit_config)
    Publisher(rabbit_config["AMQP_URI"], serializer="json").publish(
        envelope, exchange=exchange, routing_key=envelope["type"],
        extra_headers=context_headers(envelope), declare=[exchange])


def handler_queue(service_name):
    # nameko's service-pool queue name for ``handle``.
    return f"evt-producer-thing.happened--{service_name}.handle"


# --- first_delivery -------------------------------------------------------------

def test_first_delivery_is_true_once_then_false():
    session = memory_session(notes_table.metadata)
    envelope, other = envelope_for(), envelope_for()
    assert first_delivery(session, envelope) is True
    session.commit()
    assert first_delivery(session, envelope) is False
    assert first_delivery(session, envelope) is False
    assert first_delivery(session, other) is True
    stored = session.execute(select(processed_events_table)).all()
    assert {row.event_id for row in stored} == {envelope["event_id"], other["event_id"]}
    assert {row.event_type for row in stored} == {"thing.happened"}


def test_rolled_back_effect_is_not_marked_processed():
    session = memory_session(notes_table.metadata)
    envelope = envelope_for()
    assert first_delivery(session, envelope) is True
    session.rollback()  # the handler failed: its effect and the mark go together
    assert first_delivery(session, envelope) is True


def test_retry_delays_from_env(monkeypatch):
    monkeypatch.delenv("CRM_EVENT_RETRY_DELAYS", raising=False)
    assert retry_delays() == [1.0, 5.0, 30.0, 120.0]
    monkeypatch.setenv("CRM_EVENT_RETRY_DELAYS", "0.1, 0.5,")
    assert retry_delays() == [0.1, 0.5]
    assert dead_letter_queue_name("sales") == "crm.dead-letter.sales"


# --- retries and dead letters over RabbitMQ ----------------------------------------

def make_flaky_service(name, calls, failures):
    """Fails the first ``failures`` deliveries, then succeeds."""

    class FlakyService:
        context = Context()

        @event_handler("producer", "thing.happened")
        def handle(self, envelope):
            calls.append((time.monotonic(), envelope["event_id"], self.context.request_id))
            if len(calls) <= failures:
                raise RuntimeError(f"attempt {len(calls)} always fails" if failures > 99
                                   else f"attempt {len(calls)} failed")
            return "done"

    FlakyService.name = name
    return FlakyService


def test_failing_handler_is_retried_after_a_delay_and_succeeds(
        container_factory, rabbit_config, get_message_from_queue, monkeypatch, sample, unique_name):
    monkeypatch.setenv("CRM_EVENT_RETRY_DELAYS", "0.1,0.1,0.1")
    name = unique_name("flaky")
    calls = []
    container_factory(make_flaky_service(name, calls, failures=2), rabbit_config).start()
    envelope = envelope_for()
    publish_event(rabbit_config, envelope)

    wait_for(lambda: len(calls) >= 3, message="three attempts")
    assert [event_id for _, event_id, _ in calls] == [envelope["event_id"]] * 3
    # The actor context survives the trips through the delay queue.
    assert {request_id for _, _, request_id in calls} == {"req-consumer"}
    # Retries wait for the delay instead of spinning.
    assert calls[1][0] - calls[0][0] >= 0.09
    assert calls[2][0] - calls[1][0] >= 0.09
    wait_for(lambda: sample("crm_events_consumed_total", service=name, type="thing.happened",
                            outcome="ok") == 1, message="ok counted")
    assert sample("crm_events_consumed_total", service=name, type="thing.happened",
                  outcome="retry") == 2
    with pytest.raises(queue.Empty):
        get_message_from_queue(dead_letter_queue_name(name), block=False)
    assert len(calls) == 3


def test_handler_that_always_fails_ends_in_the_dead_letter_queue(
        container_factory, rabbit_config, get_message_from_queue, monkeypatch, sample, unique_name):
    monkeypatch.setenv("CRM_EVENT_RETRY_DELAYS", "0.05,0.05")
    name = unique_name("doomed")
    calls = []
    container_factory(make_flaky_service(name, calls, failures=1000), rabbit_config).start()
    envelope = envelope_for("lost?")
    publish_event(rabbit_config, envelope)

    message = get_message_from_queue(dead_letter_queue_name(name), timeout=10)
    assert message.payload == envelope
    assert message.headers[ATTEMPTS_HEADER] == 3
    assert "RuntimeError" in message.headers["x-crm-error"]
    assert "attempt 3 always fails" in message.headers["x-crm-error"]
    assert message.headers["x-crm-original-queue"] == handler_queue(name)
    # Enough to replay it later as the original actor.
    assert message.headers["nameko.request_id"] == "req-consumer"
    assert message.headers["nameko.user_id"] == "user-5"
    assert len(calls) == 3  # one delivery plus one per retry delay
    # Counted right after the broker confirmed the dead letter.
    wait_for(lambda: sample("crm_events_consumed_total", service=name, type="thing.happened",
                            outcome="dead_letter") == 1, message="dead letter counted")
    assert sample("crm_events_consumed_total", service=name, type="thing.happened",
                  outcome="retry") == 2


def test_dead_lettered_message_can_be_replayed_to_the_handler(
        container_factory, rabbit_config, get_message_from_queue, monkeypatch, unique_name):
    monkeypatch.setenv("CRM_EVENT_RETRY_DELAYS", "0.05")
    name = unique_name("replay")
    calls = []
    container_factory(make_flaky_service(name, calls, failures=2), rabbit_config).start()
    envelope = envelope_for()
    publish_event(rabbit_config, envelope)
    message = get_message_from_queue(dead_letter_queue_name(name), timeout=10)
    assert len(calls) == 2

    # An operator fixed the cause and replays the message onto its queue.
    Publisher(rabbit_config["AMQP_URI"], serializer="json").publish(
        message.payload, routing_key=message.headers["x-crm-original-queue"],
        headers={"nameko.request_id": message.headers["nameko.request_id"]})
    wait_for(lambda: len(calls) == 3, message="replayed delivery")
    assert calls[2][1:] == (envelope["event_id"], "req-consumer")


def test_refused_event_is_dead_lettered_without_retries(
        container_factory, rabbit_config, get_message_from_queue, monkeypatch, sample, unique_name):
    """An event the handler refuses as invalid would be refused on every retry."""
    monkeypatch.setenv("CRM_EVENT_RETRY_DELAYS", "0.05,0.05,0.05")
    name = unique_name("strict")
    calls = []

    class StrictService:
        @event_handler("producer", "thing.happened")
        def handle(self, envelope):
            calls.append(envelope["event_id"])
            raise ValidationFailed("unknown stage", {"stage": ["Not a valid choice."]})

    StrictService.name = name
    container_factory(StrictService, rabbit_config).start()
    envelope = envelope_for()
    publish_event(rabbit_config, envelope)

    message = get_message_from_queue(dead_letter_queue_name(name), timeout=10)
    assert message.payload == envelope
    assert message.headers[ATTEMPTS_HEADER] == 1
    assert "ValidationFailed" in message.headers["x-crm-error"]
    assert calls == [envelope["event_id"]]
    assert not sample("crm_events_consumed_total", service=name, type="thing.happened",
                      outcome="retry")  # never counted


def make_idempotent_service(name, fail_first=False):
    attempts = []

    class IdempotentService:
        db = Database()

        @event_handler("producer", "thing.happened")
        def handle(self, envelope):
            attempts.append(envelope["event_id"])
            if first_delivery(self.db, envelope):
                self.db.execute(notes_table.insert().values(text=envelope["data"]["item"]))
            if fail_first and len(attempts) == 1:
                raise RuntimeError("failed after the effect")

    IdempotentService.name = name
    return IdempotentService, attempts


def notes(url):
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [row.text for row in connection.execute(select(notes_table)).all()]
    finally:
        engine.dispose()


def test_duplicate_delivery_has_one_effect(container_factory, rabbit_config, sqlite_url, unique_name):
    service, attempts = make_idempotent_service(unique_name("idem"))
    container_factory(service, dict(rabbit_config, DB_URL=sqlite_url, max_workers=1)).start()
    duplicate = envelope_for("once")
    publish_event(rabbit_config, duplicate)
    publish_event(rabbit_config, duplicate)  # e.g. the relay crashed before marking it sent
    publish_event(rabbit_config, envelope_for("sentinel"))

    wait_for(lambda: "sentinel" in notes(sqlite_url), message="sentinel effect")
    assert attempts.count(duplicate["event_id"]) == 2
    assert notes(sqlite_url) == ["once", "sentinel"]


def test_failed_attempt_rolls_back_its_effect_and_the_retry_applies_it_once(
        container_factory, rabbit_config, sqlite_url, monkeypatch, unique_name):
    monkeypatch.setenv("CRM_EVENT_RETRY_DELAYS", "0.05")
    service, attempts = make_idempotent_service(unique_name("idem"), fail_first=True)
    container_factory(service, dict(rabbit_config, DB_URL=sqlite_url)).start()
    publish_event(rabbit_config, envelope_for("effect"))

    wait_for(lambda: notes(sqlite_url) == ["effect"], message="effect after the retry")
    assert len(attempts) == 2


# --- one handler for every event of a producer ----------------------------------------

def test_wildcard_handler_receives_every_type_and_counts_each_under_its_own(
        container_factory, rabbit_config, monkeypatch, sample, unique_name):
    monkeypatch.setenv("CRM_EVENT_RETRY_DELAYS", "0.05")
    name = unique_name("catchall")
    received = []

    class CatchAllService:
        @event_handler("producer", "#")
        def handle(self, envelope):
            received.append(envelope["type"])
            if envelope["type"] == "thing.broke" and received.count("thing.broke") == 1:
                raise RuntimeError("fails once")

    CatchAllService.name = name
    container_factory(CatchAllService, rabbit_config).start()
    for event_type in ("thing.happened", "other.thing_changed", "thing.broke"):
        publish_event(rabbit_config, make_envelope("producer", event_type, {"item": "x"}, ACTOR))

    wait_for(lambda: len(received) == 4, message="three types, one retried")
    assert sorted(received) == ["other.thing_changed", "thing.broke", "thing.broke", "thing.happened"]
    # The retry came back through the delay queue to the same catch-all handler.
    wait_for(lambda: sample("crm_events_consumed_total", service=name, type="thing.broke", outcome="ok") == 1,
             message="the retried event counted")
    assert sample("crm_events_consumed_total", service=name, type="thing.broke", outcome="retry") == 1
    assert sample("crm_events_consumed_total", service=name, type="other.thing_changed", outcome="ok") == 1
    assert not sample("crm_events_consumed_total", service=name, type="#", outcome="ok")  # never counted


# --- batches: many deliveries, one transaction ------------------------------------------

class WorkerData(DependencyProvider):
    """The live context data of the worker (what audit entries and outgoing calls carry), and a
    count of workers started."""

    def __init__(self, workers):
        self.workers = workers

    def get_dependency(self, worker_ctx):
        self.workers.append(worker_ctx)
        return worker_ctx.data


def make_batching_service(name, release, seen, workers, poison):
    """Records (item, user id of the worker's context) per delivery; its first delivery waits for
    ``release``, so that the deliveries behind it pile up."""

    class BatchingService:
        db = Database()
        worker_data = WorkerData(workers)

        @event_handler("producer", "thing.happened")
        def handle(self, envelope):
            if not seen:
                release.wait()
            item = envelope["data"]["item"]
            seen.append((item, self.worker_data.get("user_id")))
            if first_delivery(self.db, envelope):
                self.db.execute(notes_table.insert().values(text=item))
            if item == poison:
                # Refused as invalid: dead-lettered at once, without retries.
                raise ValidationFailed(f"{item} cannot be applied", {"item": ["Not applicable."]})

    BatchingService.name = name
    return BatchingService


def ready_in_queue(amqp_uri, queue_name):
    """Messages the broker still holds for ``queue_name`` (not yet sent to a consumer)."""
    with Connection(amqp_uri) as connection:
        return connection.default_channel.queue_declare(queue_name, passive=True).message_count


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_deliveries_waiting_behind_a_worker_are_applied_together_and_a_bad_one_fails_alone(
        database, request, container_factory, rabbit_config, get_message_from_queue, sample, unique_name):
    url = request.getfixturevalue("sqlite_url" if database == "sqlite" else "pg_service_url")
    name = unique_name("batch")
    release, seen, workers = eventlet.event.Event(), [], []
    container_factory(make_batching_service(name, release, seen, workers, poison="item-7"),
                      dict(rabbit_config, DB_URL=url)).start()
    actors = [RequestContext(request_id=f"req-{n}", user_id=f"user-{n}", role="sales") for n in range(12)]
    for n in range(12):
        publish_event(rabbit_config, make_envelope("producer", "thing.happened", {"item": f"item-{n}"}, actors[n]))
    # All twelve have reached the service: the first is being applied, eleven wait behind it.
    wait_for(lambda: ready_in_queue(rabbit_config["AMQP_URI"], handler_queue(name)) == 0,
             message="every delivery sent to the service")
    release.send()

    dead = get_message_from_queue(dead_letter_queue_name(name), timeout=10)
    assert dead.payload["data"]["item"] == "item-7"
    wait_for(lambda: sample("crm_events_consumed_total", service=name, type="thing.happened",
                            outcome="ok") == 11, message="the other eleven applied")
    # Every event but the bad one applied once; the bad one's effect rolled back with it.
    assert sorted(notes(url)) == sorted(f"item-{n}" for n in range(12) if n != 7)
    # The eleven that waited were applied by one worker, not eleven.
    assert len(workers) == 2
    # Each delivery ran as the actor who caused its event, in the batch and when applied alone.
    assert set(seen) == {(f"item-{n}", f"user-{n}") for n in range(12)}
