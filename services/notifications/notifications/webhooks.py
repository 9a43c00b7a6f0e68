"""Outbound webhooks: integrations subscribe to event types and get each event POSTed, signed.

- ``Webhooks``: the subscriptions, managed by admins (CRUD, deliveries, redelivery).
- ``queue_deliveries``: an event from the bus becomes one WebhookDelivery per active
  webhook whose event_types match it.
- ``deliver_due``: the scan that claims due deliveries (so two instances never POST the
  same one at once), POSTs them and records every attempt; a failure is retried with
  exponential backoff until 24 hours after the event, then the delivery is failed.

A receiver verifies a delivery with the secret shared at creation:
``X-CRM-Signature: sha256=<hex HMAC-SHA256(secret, "<X-CRM-Timestamp>." + body)>``;
the timestamp is signed with the body so a captured request cannot be replayed
later with a new timestamp.

Plain Python over SQLAlchemy sessions; nothing here knows about nameko.
"""
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

import requests
from sqlalchemy import or_, select, update

from crm_common.config import env
from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from crm_common.metrics import count_after_commit
from crm_common.pagination import keyset_page
from crm_common.types import utcnow
from crm_common.validation import load
from crm_common.versioning import check_version, flush_versioned

from notifications import ssrf
from notifications.metrics import WEBHOOK_DELIVERIES
from notifications.models import Webhook, WebhookAttempt, WebhookDelivery
from notifications.webhook_schemas import (
    WebhookAttemptOut, WebhookCreate, WebhookCreatedOut, WebhookDeliveryOut, WebhookOut, WebhookUpdate,
)

log = logging.getLogger(__name__)

# The producers whose events integrations can subscribe to: the service listens on
# each one's exchange with a single catch-all consumer.
PRODUCERS = ("customers", "sales")
DELIVERY_WINDOW = timedelta(hours=24)
REQUEST_TIMEOUT_SECONDS = 10
# How long a claimed delivery belongs to the instance that claimed it: well over
# a POST's timeout, so a live instance is never overtaken; a crashed one's
# deliveries are picked up again when it runs out.
CLAIM_LEASE = timedelta(seconds=60)
CLAIM_BATCH = 20
# POSTs of one scan sent side by side: a slow receiver (up to the 10 s timeout)
# does not hold up the others.
CONCURRENCY = 10
DEFAULT_BACKOFF_BASE_SECONDS = 30.0
# Doubling from 30 s reaches an hour after 8 failures; beyond that the wait stays
# an hour so a receiver that comes back is served within the hour, not next day.
MAX_BACKOFF_SECONDS = 3600.0
# Each wait is the doubled one ± 20 %, so deliveries that failed together (a
# receiver's outage) do not all come back in the same second.
JITTER = 0.2
MAX_ERROR_CHARS = 500
SECRET_PREFIX = "whsec_"

EVENT_HEADER = "X-CRM-Event"
DELIVERY_HEADER = "X-CRM-Delivery"
TIMESTAMP_HEADER = "X-CRM-Timestamp"
SIGNATURE_HEADER = "X-CRM-Signature"

webhook_out = WebhookOut()
created_out = WebhookCreatedOut()
delivery_out = WebhookDeliveryOut(exclude=("attempts",))
attempt_out = WebhookAttemptOut()


# --- the rules ----------------------------------------------------------------

# Events between the CRM's own services, never offered to integrations: the
# audit trail (audit.recorded) is read by admins through GET /audit only.
INTERNAL_EVENT_TYPES = frozenset({"audit.recorded"})


def event_matches(patterns, event_type):
    """Whether a webhook subscribed to ``patterns`` wants ``event_type``:
    "*" is every type, "order.*" every type that starts with "order.", anything else exactly that type.
    Internal event types match nothing."""
    if event_type in INTERNAL_EVENT_TYPES:
        return False
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def signature(secret, timestamp, body):
    """The X-CRM-Signature value of ``body`` (bytes) sent at ``timestamp`` (unix seconds)."""
    message = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def request_headers(delivery_id, event_type, secret, body, timestamp):
    return {
        "Content-Type": "application/json",
        EVENT_HEADER: event_type,
        DELIVERY_HEADER: str(delivery_id),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def backoff_seconds(failures, base, rand=random.random):
    """The wait after the ``failures``-th failed attempt: base, 2 × base, 4 × base ... (at most an
    hour), with jitter; ``rand()`` in [0, 1) (0.5 gives the wait without jitter)."""
    wait = min(base * 2 ** (failures - 1), MAX_BACKOFF_SECONDS)
    return wait * (1 + JITTER * (2 * rand() - 1))


def next_attempt_at(created_at, failures, now, base, rand=random.random):
    """When to try again after a failure at ``now``, or None to give up: retries go on until 24 hours
    after the delivery was made, the last one exactly then."""
    deadline = created_at + DELIVERY_WINDOW
    if now >= deadline:
        return None
    return min(now + timedelta(seconds=backoff_seconds(failures, base, rand)), deadline)


def new_secret():
    return SECRET_PREFIX + secrets.token_hex(24)


def envelope_bytes(envelope):
    """The body POSTed for an event: compact JSON, stored as it is sent so that a retry sends the same bytes."""
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


# --- from events to deliveries ----------------------------------------------------

def queue_deliveries(session, envelope, now=None):
    """One pending delivery of this event per active webhook that wants it; returns the new ones.

    A redelivered event makes no second delivery: each webhook gets an event
    once (unique webhook + event id). This consumer does not use
    crm_common.consumer.first_delivery: that marks the event id processed for
    the whole service, and the inbox's handlers of the same events
    (customer.assigned, customer.imported ...) would then skip them.
    """
    event_id, event_type = envelope.get("event_id"), envelope.get("type")
    if not isinstance(event_id, str) or not isinstance(event_type, str):
        raise ValidationFailed("Not an event envelope.", {"_schema": ["event_id and type are required."]})
    if event_type in INTERNAL_EVENT_TYPES:
        return []  # without a query: every change of a record sends one of these
    wanted = [webhook for webhook in session.execute(select(Webhook).where(Webhook.active.is_(True))).scalars()
              if event_matches(webhook.event_types, event_type)]
    if not wanted:
        return []
    already = set(session.execute(
        select(WebhookDelivery.webhook_id).where(WebhookDelivery.event_id == event_id)).scalars())
    now = now or utcnow()
    payload = envelope_bytes(envelope)
    deliveries = [
        WebhookDelivery(webhook_id=webhook.id, event_id=event_id, event_type=event_type, payload=payload,
                        status="pending", attempts=0, next_attempt_at=now, created_at=now)
        for webhook in wanted if webhook.id not in already
    ]
    session.add_all(deliveries)
    session.flush()
    return deliveries


# --- sending ---------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def succeeded(self):
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url, body, headers, allow_private_network, send=requests.post, resolve=None):
    """POST ``body`` once, never following redirects (a redirect could lead anywhere, past the SSRF
    check); the Outcome. The URL is checked again first: what its host resolves to may have changed."""
    try:
        ssrf.check_url(url, allow_private_network, resolve)
    except ssrf.UnsafeUrl as refused:
        return Outcome(None, f"Refused: {refused}", 0)
    started = time.monotonic()
    try:
        # stream=True and close(): the receiver's answer is not read, so a huge one costs nothing.
        response = send(url, data=body, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS,
                        allow_redirects=False, stream=True)
        response.close()
    except requests.RequestException as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS], _ms_since(started))
    status = response.status_code
    error = None if 200 <= status < 300 else f"The receiver answered HTTP {status}."
    return Outcome(status, error, _ms_since(started))


def _ms_since(started):
    return int((time.monotonic() - started) * 1000)


def claim_due(session_factory, now, batch=CLAIM_BATCH):
    """Claim up to ``batch`` due deliveries of active webhooks for this instance; their ids.

    Each claim is a conditional UPDATE that only succeeds on a delivery nobody
    holds: of two instances racing for one, exactly one sees rowcount 1.
    Deliveries of an inactive webhook wait (they go out if it is switched back
    on within their 24 hours).
    """
    free = or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now)
    with session_factory() as session:
        candidates = session.execute(
            select(WebhookDelivery.id)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now, free,
                   Webhook.active.is_(True))
            .order_by(WebhookDelivery.next_attempt_at).limit(batch)
        ).scalars().all()
        claimed = []
        for delivery_id in candidates:
            won = session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending", free)
                .values(claimed_until=now + CLAIM_LEASE)
            ).rowcount
            # One commit per claim: no row stays locked while the others are claimed.
            session.commit()
            if won == 1:
                claimed.append(delivery_id)
        return claimed


def fail_abandoned(session_factory, now):
    """Give up the deliveries of inactive webhooks that are past their 24 hours; how many."""
    with session_factory() as session:
        inactive = select(Webhook.id).where(Webhook.active.is_(False))
        failed = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.created_at <= now - DELIVERY_WINDOW,
                   WebhookDelivery.webhook_id.in_(inactive))
            .values(status="failed", finished_at=now, next_attempt_at=None, claimed_until=None,
                    last_error="Not delivered within 24 hours: the webhook was inactive.")
        ).rowcount
        session.commit()
        return failed


def record_outcome(session, delivery, outcome, now, backoff_base, rand=random.random):
    """Record one attempt of a claimed delivery and decide what comes next; releases the claim."""
    delivery.attempts += 1
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    delivery.claimed_until = None
    session.add(WebhookAttempt(delivery_id=delivery.id, attempted_at=now, status_code=outcome.status_code,
                               error=outcome.error, duration_ms=outcome.duration_ms))
    if outcome.succeeded:
        delivery.status, delivery.finished_at, delivery.next_attempt_at = "succeeded", now, None
        count_after_commit(session, WEBHOOK_DELIVERIES.labels("succeeded"))
        return
    retry_at = next_attempt_at(delivery.created_at, delivery.attempts, now, backoff_base, rand)
    if retry_at is None:
        delivery.status, delivery.finished_at, delivery.next_attempt_at = "failed", now, None
        log.warning("webhook delivery %s failed for good after %d attempts", delivery.id, delivery.attempts)
    else:
        delivery.next_attempt_at = retry_at
    count_after_commit(session, WEBHOOK_DELIVERIES.labels("failed" if retry_at is None else "retrying"))


@dataclass
class Sender:
    """Sends claimed deliveries: each reads its delivery, POSTs with no transaction open, then
    records the outcome in a session of its own. ``clock``, ``send``, ``resolve`` and ``rand`` are
    there for tests."""

    session_factory: object
    backoff_base: float = DEFAULT_BACKOFF_BASE_SECONDS
    clock: object = utcnow
    send: object = requests.post
    resolve: object = None
    rand: object = random.random

    def deliver(self, delivery_id):
        """Send one claimed delivery; its status afterwards (None when it was deleted meanwhile)."""
        with self.session_factory() as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            webhook = delivery and session.get(Webhook, delivery.webhook_id)
            if webhook is None:
                return None
            url, secret, allow_private = webhook.url, webhook.secret, webhook.allow_private_network
            event_type, body = delivery.event_type, delivery.payload.encode()
        timestamp = int(self.clock().timestamp())
        outcome = post(url, body, request_headers(delivery_id, event_type, secret, body, timestamp), allow_private,
                       self.send, self.resolve)
        with self.session_factory() as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None:  # the webhook was deleted while we were sending
                return None
            record_outcome(session, delivery, outcome, self.clock(), self.backoff_base, self.rand)
            session.commit()
            return delivery.status


def deliver_due(session_factory, pool_map=map, batch=CLAIM_BATCH, **sender_options):
    """One scan: give up abandoned deliveries, claim due ones, send them (``pool_map`` may send them
    concurrently). Returns the statuses of the deliveries sent."""
    sender_options.setdefault("backoff_base", env("CRM_WEBHOOK_BACKOFF_BASE", DEFAULT_BACKOFF_BASE_SECONDS, float))
    sender = Sender(session_factory, **sender_options)
    now = sender.clock()
    fail_abandoned(session_factory, now)
    return list(pool_map(sender.deliver, claim_due(session_factory, now, batch)))


# --- the subscriptions, for admins --------------------------------------------------

def to_dict(webhook):
    return webhook_out.dump(webhook)


def bad_url(message):
    return ValidationFailed(f"url: {message}", {"url": [message]})


class Webhooks:
    """The webhook subscriptions: admins only (they reach outside the CRM with every event)."""

    def __init__(self, session, context, resolve=None):
        if not context.is_admin:
            raise Forbidden("Only admins manage webhooks.")
        self.session = session
        self.context = context
        self.resolve = resolve

    def _check_url(self, url, allow_private_network):
        try:
            ssrf.check_url(url, allow_private_network, self.resolve)
        except ssrf.UnsafeUrl as refused:
            raise bad_url(str(refused))

    def find(self, webhook_id):
        webhook = self.session.get(Webhook, str(webhook_id))
        if webhook is None:
            raise NotFound(f"Webhook {webhook_id} was not found.")
        return webhook

    def create(self, data):
        """A new webhook; the answer holds its secret, the only time it is shown."""
        data = load(WebhookCreate, data)
        self._check_url(data["url"], data["allow_private_network"])
        now = utcnow()
        webhook = Webhook(
            url=data["url"], event_types=data["event_types"], secret=data.get("secret") or new_secret(),
            active=data["active"], description=data.get("description"),
            allow_private_network=data["allow_private_network"], created_by=self.context.user_id,
            created_at=now, updated_at=now)
        self.session.add(webhook)
        self.session.flush()
        return created_out.dump(webhook)

    def get(self, webhook_id):
        return to_dict(self.find(webhook_id))

    def list(self, limit=None, cursor=None):
        rows, next_cursor = keyset_page(self.session, select(Webhook), Webhook.created_at, Webhook.id, True,
                                        limit, cursor)
        return {"items": [to_dict(row) for row in rows], "next_cursor": next_cursor}

    def update(self, webhook_id, changes, expected_version=None):
        changes = load(WebhookUpdate, changes)
        webhook = self.find(webhook_id)
        check_version(webhook, expected_version, f"Webhook {webhook_id}")
        if "url" in changes or "allow_private_network" in changes:
            self._check_url(changes.get("url", webhook.url),
                            changes.get("allow_private_network", webhook.allow_private_network))
        for field, value in changes.items():
            setattr(webhook, field, value)
        webhook.updated_at = utcnow()
        flush_versioned(self.session, f"Webhook {webhook_id}")
        return to_dict(webhook)

    def delete(self, webhook_id):
        """Delete a webhook and its deliveries; one being sent right now still goes out."""
        self.session.delete(self.find(webhook_id))
        self.session.flush()

    def deliveries(self, webhook_id, limit=None, cursor=None):
        """The webhook's deliveries, newest first, each with its attempts (oldest first)."""
        self.find(webhook_id)
        rows, next_cursor = keyset_page(
            self.session, select(WebhookDelivery).where(WebhookDelivery.webhook_id == str(webhook_id)),
            WebhookDelivery.created_at, WebhookDelivery.id, True, limit, cursor)
        return {"items": self._with_attempts(rows), "next_cursor": next_cursor}

    def redeliver(self, webhook_id, delivery_id):
        """Send a delivery again as soon as possible (whatever became of it). Retries after a failure
        go on only within 24 hours of the event; later, it is one more attempt."""
        delivery = self.session.execute(
            select(WebhookDelivery).where(WebhookDelivery.id == str(delivery_id),
                                          WebhookDelivery.webhook_id == str(self.find(webhook_id).id))
        ).scalar_one_or_none()
        if delivery is None:
            raise NotFound(f"Delivery {delivery_id} was not found.")
        now = utcnow()
        if delivery.claimed_until is not None and delivery.claimed_until > now:
            raise Conflict(f"Delivery {delivery_id} is being sent right now; look again in a moment.")
        delivery.status, delivery.next_attempt_at, delivery.finished_at = "pending", now, None
        self.session.flush()
        [item] = self._with_attempts([delivery])
        return item

    def _with_attempts(self, deliveries):
        """The deliveries as the API shows them, each with its attempts, oldest first."""
        attempts = {delivery.id: [] for delivery in deliveries}
        if deliveries:
            for attempt in self.session.execute(
                    select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(list(attempts)))
                    .order_by(WebhookAttempt.id)).scalars():
                attempts[attempt.delivery_id].append(attempt_out.dump(attempt))
        return [{**delivery_out.dump(delivery), "attempts": attempts[delivery.id]} for delivery in deliveries]
