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
"""
import logging

import eventlet

from kombu import Exchange, Queue
from nameko.amqp.publish import Publisher
from nameko.events import EventHandler, SERVICE_POOL
from sqlalchemy import Column, String, Table, select

from crm_common import metrics
from crm_common.config import env
from crm_common.db import kernel_metadata
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


def first_delivery(session, envelope):
    """True the first time this event id is seen by this service; records it.
    A redelivery (False) is logged, so handlers just return.

    Two instances handling the same event concurrently both see True; the
    second commit fails on the primary key and its retry then sees False.
    """
    event_id = envelope["event_id"]
    seen = session.execute(
        select(processed_events_table.c.event_id).where(processed_events_table.c.event_id == event_id)
    ).first()
    if seen:
        log.info("skipping %s %s: already processed", envelope["type"], event_id)
        return False
    session.execute(processed_events_table.insert().values(
        event_id=event_id, event_type=envelope["type"], processed_at=utcnow()))
    return True


def retry_delays():
    """Seconds to wait before each retry; the number of entries is the number of retries."""
    text = env("CRM_EVENT_RETRY_DELAYS", DEFAULT_RETRY_DELAYS)
    return [float(part) for part in text.split(",") if part.strip()]


def dead_letter_queue_name(service_name):
    return f"crm.dead-letter.{service_name}"


class ReliableEventHandler(EventHandler):
    def __init__(self, source_service, event_type, **kwargs):
        super().__init__(source_service, event_type, handler_type=SERVICE_POOL,
                         reliable_delivery=True, requeue_on_error=False, **kwargs)

    def setup(self):
        super().setup()
        self.service_name = self.container.service_name
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
