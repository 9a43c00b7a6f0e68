"""The transactional outbox: an event is stored with the change that caused it.

``record_event`` adds the envelope to the ``crm_outbox`` table in the caller's
session, so the state change and its event commit (or roll back) together.
The ``OutboxRelay`` publishes committed rows in order and marks them sent. A
crash between commit and publish loses nothing: the row is still pending and
goes out on the next pass. A crash between publish and marking can publish a
row twice, which is why every consumer is idempotent.
"""
import logging
import time
from datetime import timedelta

import eventlet
from eventlet.event import Event
from amqp.exceptions import MessageNacked
from kombu import Connection, Producer
from nameko.constants import HEADER_PREFIX, PERSISTENT
from nameko.standalone.events import get_event_exchange
from sqlalchemy import Column, Index, Integer, String, Table, Text, delete, func, select, text, update

from crm_common import jsonutil, metrics
from crm_common.bulk import insert_rows
from crm_common.config import env
from crm_common.context import RequestContext
from crm_common.crypto import EncryptedText
from crm_common.db import OUTBOX_WRITTEN, kernel_metadata
from crm_common.events import make_envelope
from crm_common.types import UtcDateTime, utcnow

log = logging.getLogger(__name__)

outbox_table = Table(
    "crm_outbox",
    kernel_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("event_type", String(100), nullable=False),
    # Events carry customer snapshots (phones, emails): sealed at rest like the columns they
    # come from. Stored as text either way, so the schema is unchanged; bulk.insert_rows runs
    # the type's bind processing on its COPY path too, and the relay reads it decrypted.
    Column("payload", EncryptedText, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("published_at", UtcDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    # Only pending rows are ever scanned: keep that index small.
    Index("ix_crm_outbox_pending", "id",
          postgresql_where=text("published_at IS NULL"), sqlite_where=text("published_at IS NULL")),
)


def record_event(session, producer, event_type, data, context: RequestContext, version=1):
    """Store an event in the caller's transaction; it is published after commit."""
    envelope = make_envelope(producer, event_type, data, context, version)
    session.execute(outbox_table.insert().values(
        event_id=envelope["event_id"],
        event_type=event_type,
        payload=jsonutil.dumps(envelope),
        created_at=utcnow(),
        attempts=0,
    ))
    session.info[OUTBOX_WRITTEN] = True
    return envelope


def record_events(session, producer, events, context: RequestContext, version=1):
    """``record_event`` for many events in one INSERT (bulk imports write thousands).

    ``events`` is a list of (event_type, data); returns the event ids in order.
    Each payload is serialised once, without ``make_envelope``'s JSON round
    trip of ``data``: it is what makes an import's events cost as much as its
    validation, and the stored JSON is the same.
    """
    rows = outbox_rows(producer, events, context, version)
    if not rows:
        return []
    insert_rows(session, outbox_table, rows)
    session.info[OUTBOX_WRITTEN] = True
    return [row["event_id"] for row in rows]


def outbox_rows(producer, events, context: RequestContext, version=1):
    """The outbox rows (dicts) of ``events`` [(event_type, data)], for ``record_events`` or for
    a caller that holds events back in a table of its own and moves them here later."""
    now = utcnow()
    rows = []
    for event_type, data in events:
        envelope = make_envelope(producer, event_type, None, context, version)
        envelope["data"] = data
        rows.append({"event_id": envelope["event_id"], "event_type": event_type,
                     "payload": jsonutil.dumps(envelope), "created_at": now, "attempts": 0})
    return rows


def context_headers(envelope):
    """nameko context headers, so a consumer's worker sees the original request and actor."""
    actor = envelope.get("actor") or {}
    values = {
        "request_id": envelope.get("request_id"),
        "user_id": actor.get("user_id"),
        "user_role": actor.get("role"),
        "team_id": actor.get("team_id"),
    }
    return {f"{HEADER_PREFIX}.{key}": value for key, value in values.items() if value is not None}


def publish_pending(session, publish, batch_size=200, confirm=None):
    """Publish up to ``batch_size`` pending rows, oldest first; returns how many went out.

    ``publish(envelope)`` sends one; ``confirm()``, when given, returns once the broker has
    confirmed everything sent since its last call, and raises otherwise. Rows are marked
    sent only once confirmed: a row sent but not confirmed goes out again on the next pass
    (a duplicate, which consumers drop), never lost.

    On PostgreSQL the rows are locked with SKIP LOCKED so that several
    instances of a service relay different rows instead of the same ones.
    """
    rows = session.execute(
        select(outbox_table.c.id, outbox_table.c.event_type, outbox_table.c.payload)
        .where(outbox_table.c.published_at.is_(None))
        .order_by(outbox_table.c.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    ).all()
    # Publish first and mark afterwards in one statement: no write is pending
    # while we wait for the broker (on SQLite a write would hold the database
    # lock, and other writers' lock waits block every green thread).
    sent_ids = []
    try:
        for row in rows:
            try:
                publish(jsonutil.loads(row.payload))
            except Exception as exc:
                # Keep order: stop at the first failure and retry from here next pass.
                _record_failure(session, row.id, exc)
                sent_ids = _confirmed(sent_ids, confirm)
                raise
            sent_ids.append(row.id)
        if sent_ids and confirm is not None:
            try:
                confirm()
            except Exception as exc:
                _record_failure(session, sent_ids[0], exc)
                sent_ids = []
                raise
    finally:
        if sent_ids:
            session.execute(update(outbox_table).where(outbox_table.c.id.in_(sent_ids)).values(
                published_at=utcnow(), attempts=outbox_table.c.attempts + 1))
        session.commit()
    return len(sent_ids)


def _record_failure(session, row_id, exc):
    session.execute(update(outbox_table).where(outbox_table.c.id == row_id).values(
        attempts=outbox_table.c.attempts + 1, last_error=repr(exc)[:2000]))


def _confirmed(sent_ids, confirm):
    """``sent_ids`` if the broker confirms them, else none (they go out again)."""
    if not sent_ids or confirm is None:
        return sent_ids
    try:
        confirm()
        return sent_ids
    except Exception:
        return []


class ConfirmingPublisher:
    """Publishes events on one channel in confirm mode without waiting for each confirm;
    ``confirm()`` waits once for the broker to confirm everything published since.

    nameko's Publisher waits for the broker after every message: a round trip per event, and
    a pooled connection taken and given back each time (a seventh of the customers service's
    time while it created customers). Any failure drops the connection, and the next publish
    opens a new one."""

    def __init__(self, amqp_uri, exchange, confirm_timeout=10.0):
        self.amqp_uri = amqp_uri
        self.exchange = exchange
        self.confirm_timeout = confirm_timeout
        self.connection = None
        self.unconfirmed = set()
        self.refused = False

    def publish(self, envelope):
        # A connection kept from an earlier pass may have died meanwhile (a broker restart):
        # with nothing awaiting its confirm, one new connection is tried before giving up.
        fresh = self.connection is None or self.unconfirmed
        while True:
            if self.connection is None:
                self._connect()
            try:
                self.producer.publish(envelope, routing_key=envelope["type"], headers=context_headers(envelope),
                                      delivery_mode=PERSISTENT, retry=False)
                break
            except Exception:
                self.close()
                if fresh:
                    raise
                fresh = True
        self.published += 1
        self.unconfirmed.add(self.published)

    def confirm(self):
        deadline = time.monotonic() + self.confirm_timeout
        try:
            while self.unconfirmed and not self.refused:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"the broker did not confirm {len(self.unconfirmed)} events "
                                       f"within {self.confirm_timeout:g} s")
                self.connection.drain_events(timeout=remaining)
            if self.refused:
                raise MessageNacked("the broker refused an event")
        except BaseException:
            self.close()
            raise

    def close(self):
        connection, self.connection = self.connection, None
        self.unconfirmed = set()
        if connection is not None:
            try:
                connection.release()
            except Exception:  # already broken: nothing to give back
                pass

    def _connect(self):
        connection = Connection(self.amqp_uri)
        try:
            channel = connection.channel()
            channel.confirm_select()
            channel.events["basic_ack"].add(self._acknowledged)
            channel.events["basic_nack"].add(self._refused)
            self.exchange(channel).declare()
        except BaseException:
            connection.release()
            raise
        self.connection, self.producer = connection, Producer(channel, exchange=self.exchange, serializer="json")
        self.published, self.unconfirmed, self.refused = 0, set(), False

    def _acknowledged(self, delivery_tag, multiple):
        if multiple:
            self.unconfirmed = {tag for tag in self.unconfirmed if tag > delivery_tag}
        else:
            self.unconfirmed.discard(delivery_tag)

    def _refused(self, delivery_tag, multiple):
        self.refused = True


# Published rows are kept this long (CRM_OUTBOX_RETENTION_HOURS) for diagnosis, then purged:
# they hold customer snapshots, and erasing a person scans them (customers.personal_data).
DEFAULT_RETENTION_HOURS = 72.0
PURGE_INTERVAL_SECONDS = 600.0
PURGE_BATCH = 5000
# Rows one relay pass publishes before it looks again; and how often the pending gauge is
# counted while nothing is pending.
RELAY_BATCH = 200
GAUGE_SECONDS = 1.0


def retention_hours():
    return env("CRM_OUTBOX_RETENTION_HOURS", DEFAULT_RETENTION_HOURS, float)


def purge_published(session, older_than, batch_size=PURGE_BATCH):
    """Delete rows published before ``older_than``, a batch per transaction; how many.
    Pending rows are never touched."""
    total = 0
    while True:
        ids = session.execute(
            select(outbox_table.c.id)
            .where(outbox_table.c.published_at.is_not(None), outbox_table.c.published_at < older_than)
            .order_by(outbox_table.c.id).limit(batch_size)).scalars().all()
        if not ids:
            return total
        total += session.execute(delete(outbox_table).where(outbox_table.c.id.in_(ids))).rowcount
        session.commit()


def delete_published_mentioning(session, texts, batch_size=500):
    """Delete the already published rows whose payload contains one of ``texts`` (e.g. the id of
    a customer whose data was erased); how many. Payloads may be encrypted at rest, so rows are
    read (decrypted by the column type) in batches and matched here, not in SQL. Pending rows
    stay: they still have to go out. The retention purge above bounds the scan."""
    texts = [str(text_) for text_ in texts if text_]
    deleted, last_id = 0, 0
    while texts:
        rows = session.execute(
            select(outbox_table.c.id, outbox_table.c.payload)
            .where(outbox_table.c.published_at.is_not(None), outbox_table.c.id > last_id)
            .order_by(outbox_table.c.id).limit(batch_size)).all()
        if not rows:
            break
        last_id = rows[-1].id
        matching = [row.id for row in rows if any(text_ in (row.payload or "") for text_ in texts)]
        if matching:
            deleted += session.execute(delete(outbox_table).where(outbox_table.c.id.in_(matching))).rowcount
    return deleted


def pending_stats(session):
    """(number of pending rows, created_at of the oldest one or None)."""
    count, oldest = session.execute(
        select(func.count(), func.min(outbox_table.c.created_at))
        .where(outbox_table.c.published_at.is_(None))
    ).one()
    if oldest is not None and oldest.tzinfo is None:
        oldest = UtcDateTime().process_result_value(oldest, None)
    return count, oldest


class OutboxRelay:
    """Publishes a service's outbox: woken after each commit that wrote events,
    and every ``poll_interval`` seconds in case a wake-up was missed (a crash,
    another instance's rows, a broker outage)."""

    def __init__(self, session_factory, config, service_name, poll_interval=1.0):
        self.session_factory = session_factory
        self.service_name = service_name
        self.poll_interval = poll_interval
        # The same exchange nameko's EventDispatcher declares, so nameko
        # @event_handler consumers bind to it as usual.
        self.exchange = get_event_exchange(service_name, config)
        self.publisher = ConfirmingPublisher(config["AMQP_URI"], self.exchange)
        self._wake = Event()
        self._running = False
        self._pending_seen = True  # unknown at start: count at the first pass
        self._next_gauge = 0.0
        self._next_purge = 0.0

    def kick(self):
        if not self._wake.ready():
            self._wake.send(True)

    def stop(self):
        self._running = False
        self.kick()

    def publish(self, envelope):
        self.publisher.publish(envelope)
        metrics.EVENTS_PUBLISHED.labels(self.service_name, envelope["type"]).inc()

    def confirm(self):
        self.publisher.confirm()

    def relay_once(self):
        """Publish everything pending; returns how many events went out.

        A pass that found less than a full batch has emptied the outbox (rows committed
        since then kick the relay again), so it does not ask a second time. The pending
        gauge is counted after every pass while it is above zero (a backlog, a broker outage:
        what operators watch), and at most every GAUGE_SECONDS while it is zero: under load
        each commit kicks a pass, and a count per event was a round trip per event."""
        total = 0
        with self.session_factory() as session:
            try:
                while True:
                    sent = publish_pending(session, self.publish, RELAY_BATCH, self.confirm)
                    total += sent
                    if sent < RELAY_BATCH:
                        break
                self._purge_if_due(session)
            except BaseException:
                # A failed statement (a cut connection) leaves the transaction
                # unusable: the gauge below is read in a fresh one.
                session.rollback()
                self._observe_pending(session)
                raise
            if self._pending_seen or time.monotonic() >= self._next_gauge:
                self._observe_pending(session)
        return total

    def _purge_if_due(self, session):
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
        try:
            purged = purge_published(session, utcnow() - timedelta(hours=retention_hours()))
        except Exception:
            # Purging is housekeeping: publishing goes on without it.
            log.exception("outbox relay of %s could not purge published rows", self.service_name)
            session.rollback()
            return
        if purged:
            log.info("outbox relay of %s purged %d published rows", self.service_name, purged)

    def _observe_pending(self, session):
        self._next_gauge = time.monotonic() + GAUGE_SECONDS
        try:
            count, oldest = pending_stats(session)
        except Exception:
            log.exception("outbox relay of %s could not count pending rows", self.service_name)
            return
        self._pending_seen = count > 0
        metrics.OUTBOX_PENDING.labels(self.service_name).set(count)
        age = (utcnow() - oldest).total_seconds() if oldest else 0
        metrics.OUTBOX_OLDEST_AGE.labels(self.service_name).set(age)

    def run(self):
        self._running = True
        backoff = self.poll_interval
        while self._running:
            try:
                self.relay_once()
                backoff = self.poll_interval
            except Exception:
                log.exception("outbox relay of %s failed; retrying in %.1fs",
                              self.service_name, backoff)
                backoff = min(backoff * 2, 30.0)
            with eventlet.Timeout(backoff, False):
                self._wake.wait()
            self._wake = Event()
        self.publisher.close()
