"""The event envelope: every event on the bus has this shape.

    {"event_id", "type", "version", "occurred_at", "producer",
     "actor": {"user_id", "role", "team_id"}, "request_id", "data"}

Event types are facts in the past tense ("customer.created"). ``data`` holds
only JSON values; Decimals travel as strings.
"""
import json
import uuid

from crm_common.jsonutil import to_jsonable
from crm_common.types import utcnow


def make_envelope(producer, event_type, data, context, version=1):
    return {
        "event_id": str(uuid.uuid4()),
        "type": event_type,
        "version": version,
        "occurred_at": utcnow().isoformat(),
        "producer": producer,
        "actor": context.actor,
        "request_id": context.request_id,
        # A round trip through JSON makes data exactly what consumers receive.
        "data": json.loads(json.dumps(data, default=to_jsonable)),
    }


ENVELOPE_FIELDS = ("event_id", "type", "version", "occurred_at", "producer", "actor", "data")


def is_envelope(body):
    return isinstance(body, dict) and all(field in body for field in ENVELOPE_FIELDS)
