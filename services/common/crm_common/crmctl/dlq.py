"""``crmctl dlq``: read, replay and purge the events handlers gave up on.

A handler that keeps failing on an event (crm_common.consumer) retries it
with delays, then publishes it to its service's dead-letter queue,
``crm.dead-letter.<service>``, with headers saying which handler gave up
(``x-crm-handler``), its queue (``x-crm-original-queue``), how many attempts
it made (``x-crm-attempts``), the last error (``x-crm-error``) and when
(``x-crm-dead-lettered-at``). These commands talk to RabbitMQ directly
(AMQP_URI, as the services), not to the services, so they work while a
service is down.

    crmctl dlq list [--service S] [--limit N] [--json] [--show-payload]
    crmctl dlq replay [--service S] (--event-id ID | --all) [--dry-run]
    crmctl dlq purge [--service S] (--event-id ID | --all) --yes

Reading without consuming: AMQP has no "peek". ``list`` takes the messages
with ``basic.get`` without acknowledging them, holding each until the end (a
message held unacknowledged on our channel is not handed out again, so each
is read once and in queue order), then rejects them all with requeue:
RabbitMQ puts a requeued message back at its original position, so the
queue is left as it was. Side effects: the messages are marked
``redelivered``, and for the moment of the listing they are invisible to
anyone else (nothing consumes a dead-letter queue but these commands).

Replaying: the message is published, with its headers (the actor's context
included) and properties, to the default exchange with the failed handler's
own queue as the routing key, so only the handler that gave up sees it
again, not every subscriber of the event. The publish is ``mandatory`` and
confirmed by the broker (publisher confirms) before the dead-letter copy is
acknowledged: a crash in between duplicates it (handlers are idempotent),
never loses it. The replayed copy starts a fresh round of retries: its
``x-crm-attempts`` and ``x-crm-error`` are dropped, and ``x-crm-replays``
counts the replays, so an event that dead-letters again shows how many times
an operator has already tried.

The payload (the envelope's ``data``, personal data included) is never
printed unless asked for with ``--show-payload``; the listing shows the
envelope's metadata only.

py-amqp (the client kombu and nameko already use) rather than another AMQP
client: one client fewer to pin, and it has confirms, ``basic.get`` and
``basic.reject``.
"""
import json
from contextlib import contextmanager

from amqp import Message
from amqp.exceptions import NotFound
from kombu import Connection

from crm_common.consumer import ATTEMPTS_HEADER, dead_letter_queue_name
from crm_common.crmctl.common import SERVICES, CommandFailed, amqp_uri

REPLAYS_HEADER = "x-crm-replays"
# Headers that describe one round of failures: a replay starts a fresh round.
ROUND_HEADERS = (ATTEMPTS_HEADER, "x-crm-error", "x-crm-dead-lettered-at")
CONFIRM_TIMEOUT = 30.0


# --- reading a dead-letter queue without consuming it ----------------------------------

@contextmanager
def connect(uri=None):
    """A broker connection with publisher confirms (a publish returns once the broker has the message)."""
    connection = Connection(uri or amqp_uri(), transport_options={"confirm_publish": True})
    try:
        connection.connect()
    except Exception as error:  # noqa: BLE001 (any connection failure is the operator's to fix)
        raise CommandFailed(f"cannot reach RabbitMQ at {connection.as_uri()}: {error}") from error
    try:
        yield connection
    finally:
        connection.release()


class Held:
    """The messages of one queue taken with basic.get and not yet acknowledged.

    Leaving the ``with`` block requeues every message not acknowledged in it.
    """

    def __init__(self, channel, queue):
        self.channel = channel
        self.queue = queue
        self.messages = []
        self._settled = set()

    def take(self, limit=None):
        while limit is None or len(self.messages) < limit:
            message = self.channel.basic_get(self.queue, no_ack=False)
            if message is None:
                break
            self.messages.append(message)
        return self.messages

    def ack(self, message):
        self.channel.basic_ack(message.delivery_tag)
        self._settled.add(message.delivery_tag)

    def requeue_rest(self):
        for message in self.messages:
            if message.delivery_tag not in self._settled:
                self.channel.basic_reject(message.delivery_tag, requeue=True)
                self._settled.add(message.delivery_tag)


@contextmanager
def holding(connection, queue):
    """A Held for ``queue`` on a channel of its own; None when the queue does not exist
    (nothing of that service was ever dead-lettered)."""
    channel = connection.channel()
    try:
        channel.queue_declare(queue, passive=True)
    except NotFound:
        yield None  # the broker closed the channel
        return
    held = Held(channel, queue)
    try:
        yield held
    finally:
        if channel.is_open:
            held.requeue_rest()
            channel.close()


def payload_of(message):
    """The decoded envelope, or None when the body is not JSON."""
    body = message.body
    if isinstance(body, bytes):
        body = body.decode(message.properties.get("content_encoding") or "utf-8", errors="replace")
    try:
        return json.loads(body)
    except ValueError:
        return None


def headers_of(message):
    return dict(message.properties.get("application_headers") or {})


def describe(service, message, show_payload=False):
    """What an operator sees of one dead letter: metadata, never the data unless asked."""
    headers = headers_of(message)
    envelope = payload_of(message)
    meta = envelope if isinstance(envelope, dict) else {}
    original_queue = headers.get("x-crm-original-queue")
    handler = headers.get("x-crm-handler")
    if not handler and original_queue and "--" in original_queue:
        handler = original_queue.split("--", 1)[1]  # evt-<producer>-<type>--<service>.<method>
    entry = {
        "service": service,
        "event_id": meta.get("event_id"),
        "type": meta.get("type"),
        "producer": meta.get("producer"),
        "occurred_at": meta.get("occurred_at"),
        "request_id": meta.get("request_id"),
        "handler": handler,
        "queue": original_queue,
        "attempts": headers.get(ATTEMPTS_HEADER),
        "replays": headers.get(REPLAYS_HEADER, 0),
        "dead_lettered_at": headers.get("x-crm-dead-lettered-at"),
        "error": headers.get("x-crm-error"),
    }
    if envelope is None:
        entry["error"] = (entry["error"] or "") + " (body is not JSON)"
    if show_payload:
        entry["payload"] = envelope if envelope is not None else headers_and_body(message)[1]
    return entry


def headers_and_body(message):
    body = message.body
    return headers_of(message), body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body


def _services(services):
    if isinstance(services, str):
        return (services,)
    return tuple(services or SERVICES)


def list_dead_letters(services=None, limit=None, uri=None, show_payload=False):
    """{service: {"count": messages in its DLQ (None: no DLQ), "messages": [described, oldest first]}}.

    At most ``limit`` messages are read per service; the queue is left as it was.
    """
    found = {}
    with connect(uri) as connection:
        for service in _services(services):
            with holding(connection, dead_letter_queue_name(service)) as held:
                if held is None:
                    found[service] = {"count": None, "messages": []}
                    continue
                messages = held.take(limit)
                count = len(messages) + (messages[-1].delivery_info.get("message_count", 0) if messages else 0)
                found[service] = {"count": count,
                                  "messages": [describe(service, m, show_payload) for m in messages]}
    return found


# --- replay and purge ------------------------------------------------------------------

def _matches(message, event_id):
    if event_id is None:
        return True
    envelope = payload_of(message)
    return isinstance(envelope, dict) and envelope.get("event_id") == event_id


def _select(services, event_id, everything):
    if (event_id is None) == (not everything):
        raise CommandFailed("name one event (--event-id ID) or every dead letter (--all)", exit_code=2)
    return _services(services)


def replay_message(channel, message):
    """Publish a dead letter back onto the queue of the handler that gave up; returns that queue."""
    headers = headers_of(message)
    queue = headers.get("x-crm-original-queue")
    if not queue:
        raise CommandFailed("a dead letter without x-crm-original-queue: cannot tell which handler to replay it to")
    try:
        channel.queue_declare(queue, passive=True)
    except NotFound as error:
        raise CommandFailed(f"the handler's queue {queue} does not exist (was the handler removed?)") from error
    for name in ROUND_HEADERS:
        headers.pop(name, None)
    headers[REPLAYS_HEADER] = int(headers.get(REPLAYS_HEADER, 0)) + 1
    properties = {key: value for key, value in message.properties.items()
                  if key not in ("application_headers", "expiration")}
    properties.setdefault("delivery_mode", 2)
    copy = Message(message.body, application_headers=headers, **properties)
    # mandatory: an unroutable copy comes back (an error) instead of being confirmed and dropped.
    channel.basic_publish(copy, exchange="", routing_key=queue, mandatory=True,
                          confirm_timeout=CONFIRM_TIMEOUT)
    return queue


def replay(services=None, event_id=None, everything=False, dry_run=False, uri=None):
    """Replay the chosen dead letters; [described message + "replayed_to"], in queue order.

    Each is acknowledged (removed from the DLQ) only after the broker confirmed its copy.
    With ``dry_run`` nothing is published and the queues are left as they were.
    """
    done = []
    with connect(uri) as connection:
        publisher = connection.channel()  # confirms, and an error closes it, not the DLQ's channel
        try:
            for service in _select(services, event_id, everything):
                with holding(connection, dead_letter_queue_name(service)) as held:
                    if held is None:
                        continue
                    for message in held.take():
                        if not _matches(message, event_id):
                            continue
                        entry = describe(service, message)
                        if dry_run:
                            entry["replayed_to"] = None
                        else:
                            entry["replayed_to"] = replay_message(publisher, message)
                            held.ack(message)
                        done.append(entry)
        finally:
            if publisher.is_open:
                publisher.close()
    return done


def purge(services=None, event_id=None, everything=False, uri=None):
    """Remove the chosen dead letters for good; [described message], in queue order."""
    removed = []
    with connect(uri) as connection:
        for service in _select(services, event_id, everything):
            with holding(connection, dead_letter_queue_name(service)) as held:
                if held is None:
                    continue
                for message in held.take():
                    if _matches(message, event_id):
                        removed.append(describe(service, message))
                        held.ack(message)
    return removed


# --- the command line ------------------------------------------------------------------

def add_parsers(subparsers):
    dlq = subparsers.add_parser("dlq", help="dead-lettered events: list, replay, purge")
    commands = dlq.add_subparsers(dest="dlq_command", metavar="DLQ_COMMAND", required=True)

    def common(parser):
        parser.add_argument("--amqp-uri", default=None, help="RabbitMQ URI (default: $AMQP_URI, as the services)")
        parser.add_argument("--service", action="append", dest="services", default=None,
                            help=f"only this service's dead letters (repeatable; default: {', '.join(SERVICES)})")

    def choose(parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--event-id", help="the dead letter(s) of this event")
        which.add_argument("--all", action="store_true", dest="everything", help="every dead letter")

    listing = commands.add_parser("list", help="show the dead letters (metadata only) and leave them in place")
    common(listing)
    listing.add_argument("--limit", type=int, default=None, help="at most N messages per service")
    listing.add_argument("--json", action="store_true", help="JSON, one object per service")
    listing.add_argument("--show-payload", action="store_true",
                         help="include each event's data (personal data: only when you need it)")
    listing.set_defaults(handler=cmd_list)

    replaying = commands.add_parser(
        "replay", help="send dead letters back to the handler that gave up on them (fix the cause first)")
    common(replaying)
    choose(replaying)
    replaying.add_argument("--dry-run", action="store_true", help="show what would be replayed; change nothing")
    replaying.set_defaults(handler=cmd_replay)

    purging = commands.add_parser("purge", help="delete dead letters for good")
    common(purging)
    choose(purging)
    purging.add_argument("--yes", action="store_true", help="yes, delete them")
    purging.set_defaults(handler=cmd_purge)


def format_listing(found):
    lines = []
    for service, result in found.items():
        if result["count"] is None:
            lines.append(f"{service}: no dead-letter queue")
            continue
        shown = len(result["messages"])
        more = f", showing {shown}" if shown < result["count"] else ""
        lines.append(f"{dead_letter_queue_name(service)}: {result['count']} message(s){more}")
        for entry in result["messages"]:
            lines.append(f"  {entry['event_id']}  {entry['type']}  from {entry['producer']}  "
                         f"occurred {entry['occurred_at']}")
            lines.append(f"    handler {entry['handler']} gave up after {entry['attempts']} attempt(s)"
                         f" at {entry['dead_lettered_at']}"
                         + (f" (replayed {entry['replays']} time(s) before)" if entry["replays"] else ""))
            lines.append(f"    error: {entry['error']}")
            if "payload" in entry:
                lines.append("    payload: " + json.dumps(entry["payload"], sort_keys=True, default=str))
    return "\n".join(lines)


def cmd_list(args):
    found = list_dead_letters(args.services, args.limit, args.amqp_uri, args.show_payload)
    if args.json:
        print(json.dumps(found, indent=2, sort_keys=True, default=str))
    else:
        print(format_listing(found))
    return 0


def cmd_replay(args):
    done = replay(args.services, args.event_id, args.everything, args.dry_run, args.amqp_uri)
    for entry in done:
        target = "would replay" if args.dry_run else f"replayed to {entry['replayed_to']}:"
        print(f"{target} {entry['event_id']} {entry['type']} ({entry['handler']})")
    if args.event_id and not done:
        raise CommandFailed(f"no dead letter of event {args.event_id}")
    print(f"{len(done)} dead letter(s) {'would be ' if args.dry_run else ''}replayed")
    return 0


def cmd_purge(args):
    if not args.yes:
        raise CommandFailed("purging deletes events for good: add --yes (see them first with crmctl dlq list)",
                            exit_code=2)
    removed = purge(args.services, args.event_id, args.everything, args.amqp_uri)
    for entry in removed:
        print(f"purged {entry['event_id']} {entry['type']} ({entry['handler']})")
    if args.event_id and not removed:
        raise CommandFailed(f"no dead letter of event {args.event_id}")
    print(f"{len(removed)} dead letter(s) purged")
    return 0
