"""crm_common.outbox: events committed with the change that caused them, published by the relay."""
import socket
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import eventlet
import pytest
from nameko.events import event_handler
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy
from sqlalchemy import func, select, text

from crm_common_test_helpers import notes_table, wait_for
from crm_common.context import Context, RequestContext
from crm_common.db import Database, kernel_metadata, make_engine, make_session_factory
from crm_common.errors import Conflict
from crm_common.events import ENVELOPE_FIELDS
from crm_common.outbox import (
    OutboxRelay, outbox_rows, outbox_table, pending_stats, publish_pending, record_event, record_events,
)
from crm_common.crypto import is_encrypted
from crm_common.testing import memory_session
from crm_common.types import utcnow

ACTOR = {"request_id": "req-outbox", "user_id": "user-1", "user_role": "sales", "team_id": "team-1"}


class ProducerService:
    name = "producer"
    db = Database()
    context = Context()

    @rpc
    def place(self, item, events=1, fail=False):
        self.db.execute(notes_table.insert().values(text=item))
        for n in range(events):
            record_event(self.db, "producer", "thing.happened",
                         {"item": item, "n": n, "amount": Decimal("1.50")}, self.context)
        if fail:
            raise Conflict("refused after recording the event")
        return item

    @rpc
    def write(self, text):
        self.db.execute(notes_table.insert().values(text=text))


def make_consumer(received, name="listener"):
    """A service with a plain nameko handler that keeps what it receives."""

    class ListenerService:
        context = Context()

        @event_handler("producer", "thing.happened")
        def on_thing(self, envelope):
            received.append((envelope, self.context))

    ListenerService.name = name
    return ListenerService


def start(container_factory, service, config, **extra):
    container = container_factory(service, dict(config, **extra))
    container.start()
    return container


def rows(url):
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(select(outbox_table).order_by(outbox_table.c.id)).all()
    finally:
        engine.dispose()


def store_pending(url, count, context=None):
    """Outbox rows committed by a process that died before publishing them."""
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            envelopes = [record_event(session, "producer", "thing.happened", {"n": n},
                                      context or RequestContext.system())
                         for n in range(count)]
            session.commit()
        return envelopes
    finally:
        engine.dispose()


# --- end to end over RabbitMQ --------------------------------------------------

def test_committed_event_reaches_a_handler_with_envelope_and_actor(
        container_factory, rabbit_config, sqlite_url, sample):
    received = []
    start(container_factory, make_consumer(received), rabbit_config)
    start(container_factory, ProducerService, rabbit_config, DB_URL=sqlite_url)
    published_before = sample("crm_events_published_total", service="producer", type="thing.happened") or 0

    with ServiceRpcProxy("producer", rabbit_config, context_data=ACTOR, timeout=10) as producer:
        producer.place("widget")
    wait_for(lambda: received, message="the event")

    envelope, consumer_context = received[0]
    assert set(ENVELOPE_FIELDS) <= set(envelope)
    uuid.UUID(envelope["event_id"])
    assert envelope["type"] == "thing.happened"
    assert envelope["version"] == 1
    assert envelope["producer"] == "producer"
    assert datetime.fromisoformat(envelope["occurred_at"]).tzinfo is not None
    assert envelope["actor"] == {"user_id": "user-1", "role": "sales", "team_id": "team-1"}
    assert envelope["request_id"] == "req-outbox"
    assert envelope["data"] == {"item": "widget", "n": 0, "amount": "1.50"}  # Decimal as a string
    # The consumer's worker runs in the original request's context.
    assert (consumer_context.request_id, consumer_context.user_id,
            consumer_context.role, consumer_context.team_id) == ("req-outbox", "user-1", "sales", "team-1")

    (row,) = wait_for(lambda: [r for r in rows(sqlite_url) if r.published_at], message="row marked sent")
    assert row.event_id == envelope["event_id"]
    assert row.attempts == 1 and row.last_error is None
    wait_for(lambda: sample("crm_events_published_total", service="producer",
                            type="thing.happened") == published_before + 1,
             message="crm_events_published_total")


def test_rolled_back_transaction_publishes_nothing(container_factory, rabbit_config, sqlite_url):
    received = []
    start(container_factory, make_consumer(received), rabbit_config, max_workers=1)
    start(container_factory, ProducerService, rabbit_config, DB_URL=sqlite_url)

    with ServiceRpcProxy("producer", rabbit_config, timeout=10) as producer:
        with pytest.raises(Conflict):
            producer.place("refused", fail=True)
        producer.place("accepted")
    wait_for(lambda: received, message="the accepted event")
    # Events go out in commit order: had the refused one been published, it came first.
    assert [envelope["data"]["item"] for envelope, _ in received] == ["accepted"]
    assert [row.event_type for row in rows(sqlite_url)] == ["thing.happened"]


def test_relay_publishes_rows_left_pending_by_a_crash_in_order(
        container_factory, rabbit_config, sqlite_url):
    actor = RequestContext(request_id="req-before-crash", user_id="u9", role="admin")
    envelopes = store_pending(sqlite_url, 30, actor)
    received = []
    start(container_factory, make_consumer(received), rabbit_config, max_workers=1)
    start(container_factory, ProducerService, rabbit_config, DB_URL=sqlite_url)  # no request needed

    wait_for(lambda: len(received) >= 30, message="30 events")
    assert [envelope["event_id"] for envelope, _ in received] == [e["event_id"] for e in envelopes]
    assert {context.request_id for _, context in received} == {"req-before-crash"}
    wait_for(lambda: all(row.published_at for row in rows(sqlite_url)), message="rows marked sent")
    assert len(received) == 30


def test_events_of_one_request_keep_their_order(container_factory, rabbit_config, sqlite_url):
    received = []
    start(container_factory, make_consumer(received), rabbit_config, max_workers=1)
    start(container_factory, ProducerService, rabbit_config, DB_URL=sqlite_url)
    with ServiceRpcProxy("producer", rabbit_config, timeout=10) as producer:
        producer.place("first", events=5)
        producer.place("second", events=5)
    wait_for(lambda: len(received) >= 10, message="10 events")
    assert [(e["data"]["item"], e["data"]["n"]) for e, _ in received] == \
        [("first", n) for n in range(5)] + [("second", n) for n in range(5)]


def test_writes_are_not_blocked_while_the_relay_publishes(
        container_factory, rabbit_config, sqlite_url, monkeypatch):
    """On SQLite, a relay that held the write lock while talking to the broker
    would make every other writer wait on SQLite's lock, which blocks the whole
    process under eventlet (and fails after the busy timeout)."""
    original_publish = OutboxRelay.publish

    def publish_with_broker_latency(relay, envelope):
        eventlet.sleep(0.01)
        original_publish(relay, envelope)

    monkeypatch.setattr(OutboxRelay, "publish", publish_with_broker_latency)
    store_pending(sqlite_url, 40)
    start(container_factory, ProducerService, rabbit_config, DB_URL=sqlite_url)

    def pending():
        return sum(1 for row in rows(sqlite_url) if row.published_at is None)

    # A write that had to wait for the relay's lock would come back only once the backlog had
    # gone (the relay commits once per pass): several writes answered while rows were still
    # pending show that writers and the relay did not wait on each other. (A time limit per
    # write, as this test had, failed once on a machine busy with other runs.)
    writes_during_backlog = 0
    with ServiceRpcProxy("producer", rabbit_config, timeout=10) as producer:
        while pending():
            producer.write("during relay")
            writes_during_backlog += 1
    assert writes_during_backlog >= 3


# --- relay unit behaviour (SQLite in memory) -------------------------------------

def add_pending(session, count):
    envelopes = [record_event(session, "svc", "thing.happened", {"n": n}, RequestContext.system())
                 for n in range(count)]
    session.commit()
    return envelopes


def test_publish_failure_keeps_order_and_leaves_rows_pending():
    session = memory_session(notes_table.metadata)
    envelopes = add_pending(session, 4)
    published = []

    def flaky(envelope):
        if envelope["data"]["n"] == 2:
            raise ConnectionError("broker unreachable")
        published.append(envelope["event_id"])

    with pytest.raises(ConnectionError):
        publish_pending(session, flaky)
    assert published == [e["event_id"] for e in envelopes[:2]]

    state = {row.event_id: row for row in session.execute(select(outbox_table)).all()}
    sent, failed, untouched = envelopes[:2], envelopes[2], envelopes[3]
    assert all(state[e["event_id"]].published_at is not None for e in sent)
    assert state[failed["event_id"]].published_at is None
    assert state[failed["event_id"]].attempts == 1
    assert "broker unreachable" in state[failed["event_id"]].last_error
    assert state[untouched["event_id"]].published_at is None
    assert state[untouched["event_id"]].attempts == 0
    assert pending_stats(session)[0] == 2

    # The next pass resumes where the last one stopped, in order.
    assert publish_pending(session, lambda envelope: published.append(envelope["event_id"])) == 2
    assert published == [e["event_id"] for e in envelopes]
    assert pending_stats(session) == (0, None)


def test_publish_pending_respects_batch_size():
    session = memory_session(notes_table.metadata)
    envelopes = add_pending(session, 5)
    seen = []
    assert publish_pending(session, lambda e: seen.append(e["event_id"]), batch_size=2) == 2
    assert publish_pending(session, lambda e: seen.append(e["event_id"]), batch_size=2) == 2
    assert publish_pending(session, lambda e: seen.append(e["event_id"]), batch_size=2) == 1
    assert publish_pending(session, lambda e: seen.append(e["event_id"]), batch_size=2) == 0
    assert seen == [e["event_id"] for e in envelopes]


def test_pending_stats_counts_pending_rows_and_oldest_time():
    session = memory_session(notes_table.metadata)
    assert pending_stats(session) == (0, None)
    before = datetime.now(timezone.utc)
    add_pending(session, 3)
    count, oldest = pending_stats(session)
    assert count == 3
    assert oldest.tzinfo is not None
    assert before <= oldest <= datetime.now(timezone.utc)


def test_rolled_back_session_leaves_no_outbox_row():
    session = memory_session(notes_table.metadata)
    record_event(session, "svc", "thing.happened", {}, RequestContext.system())
    session.rollback()
    assert pending_stats(session) == (0, None)


def test_record_events_stores_many_envelopes_in_order_and_in_the_callers_transaction():
    session = memory_session(notes_table.metadata)
    context = RequestContext.from_context_data(ACTOR)
    event_ids = record_events(session, "svc", [("thing.happened", {"n": 0, "amount": Decimal("1.50")}),
                                               ("thing.noticed", {"n": 1})], context)
    published = []
    assert publish_pending(session, published.append) == 2
    assert [e["event_id"] for e in published] == event_ids
    assert [(e["type"], e["data"]["n"]) for e in published] == [("thing.happened", 0), ("thing.noticed", 1)]
    assert published[0]["data"]["amount"] == "1.50"
    assert all(set(e) >= set(ENVELOPE_FIELDS) and e["producer"] == "svc" for e in published)
    assert all(e["actor"]["user_id"] == "user-1" and e["request_id"] == "req-outbox" for e in published)
    assert record_events(session, "svc", [], context) == []

    record_events(session, "svc", [("thing.happened", {"n": 2})], context)
    session.rollback()
    assert pending_stats(session) == (0, None)


def raw_payloads(session):
    return session.execute(text("SELECT payload FROM crm_outbox ORDER BY id")).scalars().all()


@pytest.mark.parametrize("count", [3, 60])
def test_payloads_are_encrypted_at_rest_and_published_decrypted(count, pg_url):
    """Events carry personal data (customer snapshots): the stored payload is ciphertext,
    also on PostgreSQL's COPY path (record_events of 50+ rows), and the relay publishes the envelope."""
    engine = make_engine(pg_url)
    kernel_metadata.create_all(engine)
    Session = make_session_factory(engine)
    context = RequestContext.from_context_data(ACTOR)
    with Session() as session:
        record_event(session, "svc", "thing.happened", {"phone": "+49301112222"}, context)
        record_events(session, "svc", [("thing.noticed", {"email": f"p{n}@example.com"})
                                       for n in range(count)], context)
        session.commit()
        stored = raw_payloads(session)
        assert len(stored) == count + 1
        assert all(is_encrypted(payload) for payload in stored)
        assert not any("example.com" in payload or "4930111" in payload for payload in stored)
        published = []
        while publish_pending(session, published.append):
            pass
    assert published[0]["data"] == {"phone": "+49301112222"}
    assert [e["data"]["email"] for e in published[1:]] == [f"p{n}@example.com" for n in range(count)]
    engine.dispose()


def test_outbox_rows_written_elsewhere_and_moved_in_stay_encrypted():
    session = memory_session(notes_table.metadata)
    context = RequestContext.from_context_data(ACTOR)
    from crm_common.bulk import insert_rows
    insert_rows(session, outbox_table, outbox_rows("svc", [("thing.happened", {"phone": "+4930999"})], context))
    (stored,) = raw_payloads(session)
    assert is_encrypted(stored) and "4930999" not in stored
    published = []
    publish_pending(session, published.append)
    assert published[0]["data"] == {"phone": "+4930999"}


def make_relay(session_factory, service_name):
    # The publisher connects lazily; these tests replace publish itself.
    return OutboxRelay(session_factory, {"AMQP_URI": "amqp://guest:guest@127.0.0.1:1/"}, service_name)


def test_outbox_pending_gauge_follows_the_relay(sample, unique_name):
    engine = make_engine("sqlite://")
    kernel_metadata.create_all(engine)
    Session = make_session_factory(engine)
    with Session() as session:
        envelopes = add_pending(session, 3)
        # Events that have waited since the broker went down: the oldest ten
        # minutes, the others five.
        now = utcnow()
        for envelope, age in zip(envelopes, (600, 300, 300)):
            session.execute(outbox_table.update()
                            .where(outbox_table.c.event_id == envelope["event_id"])
                            .values(created_at=now - timedelta(seconds=age)))
        session.commit()
    service = unique_name("gauge")
    relay = make_relay(Session, service)

    def broker_down(envelope):
        raise ConnectionError("broker down")

    relay.publish = broker_down
    with pytest.raises(ConnectionError):
        relay.relay_once()
    # Operators alert on these while the broker is down: they must not freeze,
    # and the age is the oldest pending event's (not the newest's, not a sum).
    assert sample("crm_outbox_pending", service=service) == 3
    age = sample("crm_outbox_oldest_pending_age_seconds", service=service)
    assert age is not None, "the relay did not report the oldest pending event's age"
    assert 600 <= age < 900

    sent = []
    relay.publish = sent.append
    assert relay.relay_once() == 3
    assert len(sent) == 3
    assert sample("crm_outbox_pending", service=service) == 0
    assert sample("crm_outbox_oldest_pending_age_seconds", service=service) == 0


def test_a_relay_pass_under_load_asks_once_and_counts_the_pending_rows_once_a_second(unique_name, monkeypatch):
    """Each commit that wrote an event kicks a pass: a pass that found less than a full batch
    does not look again, and while nothing is pending the gauge is not recounted every pass."""
    from sqlalchemy import event

    from crm_common import outbox

    # However slow this machine is, the passes below fall within one gauge interval.
    monkeypatch.setattr(outbox, "GAUGE_SECONDS", 3600.0)

    engine = make_engine("sqlite://")
    kernel_metadata.create_all(engine)
    Session = make_session_factory(engine)
    relay = make_relay(Session, unique_name("quiet"))
    sent = []
    relay.publish = sent.append
    relay.relay_once()  # the first pass counts (nothing known yet): now the gauge knows 0
    statements = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    for _ in range(3):  # three events, each committed and relayed on its own, as under load
        with Session() as session:
            add_pending(session, 1)
        assert relay.relay_once() == 1
    selects = [statement for statement in statements if statement.lstrip().upper().startswith("SELECT")]
    # One look per pass for pending rows; no second look, no count of the pending rows.
    assert len(sent) == 3 and len(selects) == 3, selects


def test_relay_run_loop_retries_after_failures_and_stops(unique_name):
    engine = make_engine("sqlite://")
    kernel_metadata.create_all(engine)
    Session = make_session_factory(engine)
    relay = make_relay(Session, unique_name("loop"))
    relay.poll_interval = 0.01
    calls = []

    def fails_twice(envelope):
        calls.append(envelope["event_id"])
        if len(calls) <= 2:
            raise ConnectionError("not yet")

    relay.publish = fails_twice
    with Session() as session:
        (envelope,) = add_pending(session, 1)
    runner = eventlet.spawn(relay.run)
    try:
        def nothing_pending():
            with Session() as session:
                return pending_stats(session)[0] == 0

        wait_for(nothing_pending, message="relay to publish after retries")
    finally:
        relay.stop()
        runner.wait()
    assert calls == [envelope["event_id"]] * 3


# --- PostgreSQL: several instances relay one outbox -----------------------------------

def test_two_relays_on_postgres_publish_each_row_exactly_once(pg_url):
    engine = make_engine(pg_url)
    kernel_metadata.create_all(engine)
    Session = make_session_factory(engine)
    with Session() as session:
        envelopes = add_pending(session, 60)
    published = {"a": [], "b": []}

    def relay(name):
        def publish(envelope):
            published[name].append(envelope["event_id"])
            eventlet.sleep(0.001)  # broker round trip: lets the other relay run

        with Session() as session:
            while publish_pending(session, publish, batch_size=5):
                pass

    threads = [eventlet.spawn(relay, name) for name in published]
    for thread in threads:
        thread.wait()
    everything = published["a"] + published["b"]
    assert sorted(everything) == sorted(e["event_id"] for e in envelopes)
    assert len(set(everything)) == len(everything) == 60
    # Both really worked at the same time (SKIP LOCKED gives each other rows).
    assert published["a"] and published["b"]
    with Session() as session:
        assert pending_stats(session) == (0, None)
        attempts = session.execute(select(func.max(outbox_table.c.attempts))).scalar()
        assert attempts == 1
    engine.dispose()


def test_two_service_instances_on_postgres_deliver_each_event_once(
        container_factory, rabbit_config, pg_url):
    engine = make_engine(pg_url)
    kernel_metadata.create_all(engine)
    notes_table.metadata.create_all(engine)
    engine.dispose()
    envelopes = store_pending(pg_url, 50)
    received = []
    start(container_factory, make_consumer(received), rabbit_config, max_workers=1)
    # Two instances of the producer start on the same database with the backlog.
    start(container_factory, ProducerService, rabbit_config, DB_URL=pg_url)
    start(container_factory, ProducerService, rabbit_config, DB_URL=pg_url)

    wait_for(lambda: all(row.published_at for row in rows(pg_url)), message="backlog sent")
    # One more event, published after every backlog row was confirmed by the
    # broker: once it arrives, any duplicate would have arrived before it.
    with ServiceRpcProxy("producer", rabbit_config, timeout=10) as producer:
        producer.place("sentinel")
    wait_for(lambda: any(e["data"].get("item") == "sentinel" for e, _ in received),
             message="sentinel event")
    backlog = [e["event_id"] for e, _ in received if "item" not in e["data"]]
    assert sorted(backlog) == sorted(e["event_id"] for e in envelopes)


# --- confirms: rows are marked sent only once the broker has them ------------------------

def test_rows_the_broker_did_not_confirm_stay_pending_and_go_out_again():
    engine = make_engine("sqlite://")
    kernel_metadata.create_all(engine)
    Session = make_session_factory(engine)
    sent = []

    def broker_lost_them():
        raise TimeoutError("the broker did not confirm 3 events within 10 s")

    with Session() as session:
        envelopes = add_pending(session, 3)
        with pytest.raises(TimeoutError):
            publish_pending(session, sent.append, confirm=broker_lost_them)
        assert pending_stats(session)[0] == 3
        first = session.execute(select(outbox_table).order_by(outbox_table.c.id)).first()
        assert "did not confirm" in first.last_error

        # A failure after some were sent: only what the broker confirmed is marked.
        def fails_at_the_third(envelope):
            if envelope["event_id"] == envelopes[2]["event_id"]:
                raise ConnectionError("connection reset")
            sent.append(envelope)

        with pytest.raises(ConnectionError):
            publish_pending(session, fails_at_the_third, confirm=broker_lost_them)
        assert pending_stats(session)[0] == 3
        with pytest.raises(ConnectionError):
            publish_pending(session, fails_at_the_third, confirm=lambda: None)
        assert pending_stats(session)[0] == 1

        assert publish_pending(session, sent.append, confirm=lambda: None) == 1
        assert pending_stats(session)[0] == 0
    # Everything went out at least once; the unconfirmed ones more than once (consumers drop those).
    assert {envelope["event_id"] for envelope in sent} == {envelope["event_id"] for envelope in envelopes}


def test_relay_replaces_a_broker_connection_that_died_between_passes_and_loses_nothing(
        container_factory, rabbit_config, unique_name):
    received = []
    start(container_factory, make_consumer(received), rabbit_config)
    engine = make_engine("sqlite://")
    kernel_metadata.create_all(engine)
    Session = make_session_factory(engine)
    relay = OutboxRelay(Session, rabbit_config, "producer")
    try:
        with Session() as session:
            add_pending(session, 2)
        assert relay.relay_once() == 2
        # The broker connection dies while the relay is idle (a broker restart, a cut network).
        relay.publisher.connection.connection.sock.shutdown(socket.SHUT_RDWR)
        with Session() as session:
            later = add_pending(session, 3)
        assert relay.relay_once() == 3  # on a new connection, in the same pass
        wait_for(lambda: len(received) == 5, message="all five events")
        assert [envelope["event_id"] for envelope, _ in received[2:]] == [envelope["event_id"] for envelope in later]
        with Session() as session:
            assert session.execute(select(outbox_table.c.last_error).where(
                outbox_table.c.last_error.is_not(None))).all() == []
    finally:
        relay.publisher.close()
