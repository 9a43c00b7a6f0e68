"""Consuming events: once only, with retries, and nothing silently dropped.

``first_delivery`` records an event id in the consumer's own database, in the
same transaction as the handler's effect; a redelivered event finds its id and
is skipped.

``event_handler`` is nameko's event handler (service-pool queues, so N
instances share one queue) with a different failure path. nameko's default
acks and drops a message whose handler raised. Here a failed message is
republished to a delay queue that dead-letters it back onto the handler's
queue after a backoff; after the last attempt it goes to the service's
dead-letter queue, ``crm.dead-letter.<service>``, where an operator can
inspect and replay it. The retry copy is confirmed by the broker before the
original is acked, so a crash in between duplicates, never loses.

The event type is the routing key on the producer's topic exchange, so a
wildcard binds one handler to many types: ``event_handler("sales", "#")``
receives every event sales publishes ("contract.*" every contract event).
Metrics then count each event under its own type, read from the envelope.

Deliveries are applied in batches (``apply_batch``): while one batch's transaction runs,
the deliveries that arrive wait, and the next worker applies up to BATCH_SIZE of them in one
transaction, one commit. At light load a batch is one delivery and waits for nothing; under
load the commit, the worker and the processed-events insert are paid once per batch instead
of once per event. Each delivery is still settled on its own: should a batch fail, its
deliveries are applied again one transaction each, so one bad event is retried or
dead-lettered alone and the others commit. Each delivery runs as its own actor (the worker's
context data and log request id switch per event), so audit entries and outgoing calls name
the right one. ``self.context`` is injected once per worker: a handler reads the actor from
the envelope, as every handler here does.
"""
import sys
from functools import partial

import logging

import eventlet

from kombu import Exchange, Queue
from nameko.amqp.publish import Publisher
from nameko.events import EventHandler, SERVICE_POOL
from nameko.exceptions import ContainerBeingKilled
from nameko.messaging import QueueConsumer
from sqlalchemy import Column, String, Table
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from crm_common import metrics
from crm_common.config import env
from crm_common.context import CONTEXT_KEYS, REQUEST_ID, TEAM_ID, USER_ID, USER_ROLE
from crm_common.db import OUTBOX_WRITTEN, Database, kernel_metadata
from crm_common.logs import bind_request_id
from crm_common.rpc import BROKER_ERRORS
from crm_common.types import UtcDateTime, utcnow

log = logging.getLogger(__name__)

processed_events_table = Table(
    "crm_processed_events",
    kernel_metadata,
    Column("event_id", String(36), primary_key=True),
    Column("event_type", String(100), nullable=False),
    Column("processed_at", UtcDateTime, nullable=False),
)

ATTEMPTS_HEADER = "x-crm-attempts"
DEFAULT_RETRY_DELAYS = "1,5,30,120"
DEFAULT_EXCHANGE = Exchange("")
# Deliveries one worker applies in one transaction, at most; the broker sends each handler's
# queue twice that many ahead, so the next batch is waiting when one commits.
BATCH_SIZE = 25


def first_delivery(session, envelope):
    """True the first time this event id is seen by this service; records it.
    A redelivery (False) is logged, so handlers just return.

    One statement: the insert does nothing when the id is already there. Two instances
    handling the same event concurrently: on PostgreSQL the second insert waits for the
    first transaction and then finds the id (False); on SQLite the write lock orders them.
    """
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    inserted = session.execute(insert(processed_events_table).values(
        event_id=envelope["event_id"], event_type=envelope["type"], processed_at=utcnow(),
    ).on_conflict_do_nothing(index_elements=["event_id"])).rowcount
    if not inserted:
        log.info("skipping %s %s: already processed", envelope["type"], envelope["event_id"])
        return False
    return True


def apply_batch(handler, session, worker_ctx, on_commit, envelopes):
    """Apply ``handler`` to each envelope in one transaction; returns, per envelope, None
    (applied) or the exc_info of its failure.

    Should the batch fail, it is rolled back and each envelope is applied again in a
    transaction of its own: the failures are exactly the envelopes that fail alone.
    ``on_commit()`` runs after every commit that wrote outbox rows."""
    try:
        for envelope in envelopes:
            _act_as_sender_of(worker_ctx, envelope)
            handler(envelope)
            # Flushed under this envelope's actor: the audit listener reads it at flush time.
            session.flush()
        session.commit()
        _after_commit(session, on_commit)
        return [None] * len(envelopes)
    except Exception:
        session.rollback()
        if len(envelopes) == 1:
            _log_failure(worker_ctx, envelopes[0])
            return [sys.exc_info()]
    outcomes = []
    for envelope in envelopes:
        _act_as_sender_of(worker_ctx, envelope)
        try:
            handler(envelope)
            session.commit()
            _after_commit(session, on_commit)
            outcomes.append(None)
        except Exception:
            session.rollback()
            _log_failure(worker_ctx, envelope)
            outcomes.append(sys.exc_info())
    return outcomes


def _act_as_sender_of(worker_ctx, envelope):
    # What nameko's handler would have unpacked from this delivery's headers (outbox.context_headers).
    envelope = envelope if isinstance(envelope, dict) else {}
    actor = envelope.get("actor") or {}
    values = {REQUEST_ID: envelope.get("request_id"),
              USER_ID: actor.get("user_id"), USER_ROLE: actor.get("role"), TEAM_ID: actor.get("team_id")}
    for key in CONTEXT_KEYS:
        worker_ctx.data.pop(key, None)
    worker_ctx.data.update({key: value for key, value in values.items() if value is not None})
    bind_request_id(values[REQUEST_ID])


def _after_commit(session, on_commit):
    if session.info.pop(OUTBOX_WRITTEN, False):
        on_commit()


def _log_failure(worker_ctx, envelope):
    # What nameko logs for a failed worker, per delivery (the batch worker itself succeeds).
    kind = envelope.get("type") if isinstance(envelope, dict) else type(envelope).__name__
    log.exception("handler %s.%s failed on %s", worker_ctx.service_name, worker_ctx.entrypoint.method_name, kind)


def retry_delays():
    """Seconds to wait before each retry; the number of entries is the number of retries."""
    text = env("CRM_EVENT_RETRY_DELAYS", DEFAULT_RETRY_DELAYS)
    return [float(part) for part in text.split(",") if part.strip()]


def dead_letter_queue_name(service_name):
    return f"crm.dead-letter.{service_name}"


class BatchQueueConsumer(QueueConsumer):
    """The event handlers' consumer: a connection of their own, with room for a batch waiting
    while another is applied (nameko's shared one lets max_workers deliveries wait per queue)."""

    @property
    def prefetch_count(self):
        return 2 * BATCH_SIZE


class ReliableEventHandler(EventHandler):
    queue_consumer = BatchQueueConsumer()

    def __init__(self, source_service, event_type, **kwargs):
        super().__init__(source_service, event_type, handler_type=SERVICE_POOL,
                         reliable_delivery=True, requeue_on_error=False, **kwargs)

    def setup(self):
        super().setup()
        self.service_name = self.container.service_name
        # Batches need the unit of work crm_common.db.Database runs (apply_batch); a service
        # without a database gets one delivery per worker, as nameko gives.
        self.batched = any(isinstance(dependency, Database) for dependency in self.container.dependencies)
        self._waiting = []
        self._applying = False
        self.publisher = Publisher(self.container.config["AMQP_URI"], serializer="json")
        self.retry_queue = Queue(
            f"{self.queue.name}.retry",
            exchange=DEFAULT_EXCHANGE,
            routing_key=f"{self.queue.name}.retry",
            durable=True,
            # An expired message goes back to the handler's own queue.
            queue_arguments={
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self.queue.name,
            },
        )
        name = dead_letter_queue_name(self.service_name)
        self.dead_letter_queue = Queue(name, exchange=DEFAULT_EXCHANGE, routing_key=name, durable=True)

    def handle_message(self, body, message):
        if not self.batched:
            return super().handle_message(body, message)
        self._waiting.append((body, message))
        if not self._applying:
            self._apply_waiting()

    def _apply_waiting(self):
        batch, self._waiting = self._waiting[:BATCH_SIZE], self._waiting[BATCH_SIZE:]
        if not batch:
            return
        self._applying = True
        try:
            self.container.spawn_worker(
                self, ([body for body, _ in batch],), {},
                context_data=self.unpack_message_headers(batch[0][1]),
                handle_result=partial(self._batch_applied, batch))
        except ContainerBeingKilled:
            # Stopping: the broker gets these back now, and the waiting ones when the connection closes.
            self._applying = False
            for _, message in batch:
                self.queue_consumer.requeue_message(message)

    def _batch_applied(self, batch, worker_ctx, result=None, exc_info=None):
        # ``result``: apply_batch's outcome per delivery; ``exc_info``: the worker failed before
        # applying anything (its session could not be made), which fails every delivery.
        outcomes = result if exc_info is None else [exc_info] * len(batch)
        try:
            for (_, message), failure in zip(batch, outcomes):
                self.handle_message_processed(message, None, failure)
        finally:
            if self._waiting:
                # Not from here: this worker still holds its slot, and spawning the next one
                # waits for a free slot; with every slot held by a worker doing the same, none
                # would ever free.
                self.container.spawn_managed_thread(self._apply_next, identifier=f"{self.method_name}.next_batch")
            else:
                self._applying = False
        return result, exc_info

    def _apply_next(self):
        self._applying = False
        self._apply_waiting()

    def _counted_type(self, message):
        if "*" not in self.event_type and "#" not in self.event_type:
            return self.event_type
        payload = message.payload
        return payload.get("type", self.event_type) if isinstance(payload, dict) else self.event_type

    def handle_message_processed(self, message, result=None, exc_info=None):
        # Every broker operation here is guarded: one that raises would end the
        # worker thread with an error, and nameko then kills the whole container
        # (seen during a broker restart: sales and reporting exited, from a
        # retry publish and from an ack on a reset connection, and never came back).
        if exc_info is None:
            metrics.EVENTS_CONSUMED.labels(self.service_name, self._counted_type(message), "ok").inc()
        else:
            try:
                self._retry_or_dead_letter(message, exc_info)
            except BROKER_ERRORS as error:
                # The retry or dead-letter copy was not published. The event stays
                # unacknowledged: requeued if the channel still lives (after a
                # pause, not in a hot loop), else the broker has reclaimed it and
                # redelivers it once we reconnect. The handler failed, so nothing
                # was committed for it: it is still applied once.
                log.warning("handler %s.%s could not schedule the retry of %s (%s); it will be redelivered",
                            self.service_name, self.method_name, self.event_type, error)
                eventlet.sleep(1)
                self._settle(self.queue_consumer.requeue_message, message)
                return
        self._settle(self.queue_consumer.ack_message, message)

    def _settle(self, operation, message):
        try:
            operation(message)
        except BROKER_ERRORS as error:
            # The connection died under the ack: the broker redelivers the event,
            # and the processed-events record makes the redelivery a no-op.
            log.warning("handler %s.%s could not settle %s (%s); the broker will redeliver it",
                        self.service_name, self.method_name, self.event_type, error)

    def _retry_or_dead_letter(self, message, exc_info):
        attempts = int((message.headers or {}).get(ATTEMPTS_HEADER, 0)) + 1
        headers = dict(message.headers or {})
        headers[ATTEMPTS_HEADER] = attempts
        delays = retry_delays()
        if attempts <= len(delays) and _worth_retrying(exc_info[1]):
            delay = delays[attempts - 1]
            log.warning("handler %s.%s failed on %s (attempt %d); retrying in %ss",
                        self.service_name, self.method_name, self.event_type, attempts, delay)
            self.publisher.publish(
                message.payload, exchange=DEFAULT_EXCHANGE, routing_key=self.retry_queue.name,
                declare=[self.retry_queue], headers=headers, expiration=delay,
            )
            metrics.EVENTS_CONSUMED.labels(self.service_name, self._counted_type(message), "retry").inc()
        else:
            # What `crmctl dlq list` shows and `crmctl dlq replay` needs (crm_common.crmctl.dlq).
            headers.update({
                "x-crm-original-queue": self.queue.name,
                "x-crm-original-exchange": self.queue.exchange.name,
                "x-crm-handler": f"{self.service_name}.{self.method_name}",
                "x-crm-dead-lettered-at": utcnow().isoformat(),
                "x-crm-error": repr(exc_info[1])[:1000],
            })
            log.error("handler %s.%s gave up on %s after %d attempts; dead-lettered",
                      self.service_name, self.method_name, self.event_type, attempts)
            self.publisher.publish(
                message.payload, exchange=DEFAULT_EXCHANGE, routing_key=self.dead_letter_queue.name,
                declare=[self.dead_letter_queue], headers=headers,
            )
            metrics.EVENTS_CONSUMED.labels(self.service_name, self._counted_type(message), "dead_letter").inc()


def _worth_retrying(exc):
    # An event the handler refuses as invalid (a 4xx-class CrmError) will be
    # refused again: it goes to the dead-letter queue at once.
    status = getattr(exc, "status", None)
    return not (isinstance(status, int) and 400 <= status < 500)


event_handler = ReliableEventHandler.decorator
