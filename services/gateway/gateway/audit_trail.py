"""The audit trail's store: entries in the gateway's ``audit_entries`` table.

Plain Python over a SQLAlchemy session. Entries arrive two ways: the gateway
writes its own (sign-ins, users, API keys, refusals) with ``write_entry`` in
the transaction of the change, and every other service's ``audit.recorded``
events are stored by ``store_recorded`` (the event id is the entry id, so a
redelivery inserts nothing). Nothing here updates or deletes an entry; the
database refuses both anyway (migration 0006).
"""
import dataclasses
from datetime import datetime, timezone

from sqlalchemy import select

from crm_common.audit import OUTCOMES, audit_data, mask
from crm_common.context import RequestContext
from crm_common.errors import ValidationFailed
from crm_common.pagination import check_limit, keyset_page
from crm_common.readmodel import dialect_insert
from crm_common.types import new_id, utcnow

from gateway.models import AuditEntry

PRODUCER = "gateway"
FILTERS = ("actor", "entity_type", "entity_id", "action")
ENTRY_FIELDS = ("id", "occurred_at", "service", "actor_id", "actor_role", "api_key_id", "client_ip",
                "request_id", "entity_type", "entity_id", "action", "outcome", "changes", "detail")


def as_actor(context: RequestContext, user):
    """``context`` acting as ``user`` (a sign-in: the request had no caller yet)."""
    return dataclasses.replace(context or RequestContext.system(), user_id=user.id, role=user.role,
                               team_id=user.team_id)


def anonymous(context: RequestContext):
    """``context`` with nobody signed in (a failed sign-in): the request and address stay."""
    return dataclasses.replace(context or RequestContext.system(), user_id=None, role=None, team_id=None,
                               api_key_id=None)


def write_entry(session, context, action, entity_type, entity_id=None, changes=None, detail=None,
                outcome="success"):
    """Add a gateway entry to ``session``: it commits (or rolls back) with the caller's change."""
    data = audit_data(context, PRODUCER, action, entity_type, entity_id, changes, detail, outcome)
    entry = _entry(new_id(), utcnow(), data)
    session.add(entry)
    return entry


def store_recorded(session, envelope):
    """Store an ``audit.recorded`` event; False when its entry is there already (a redelivery,
    or another instance storing it at the same moment).

    One INSERT ... ON CONFLICT DO NOTHING: every write of every service sends one of these, so a
    look-up first would be a round trip more on the busiest consumer of the gateway."""
    entry_id = envelope["event_id"]
    data = envelope["data"]
    occurred_at = _parse_time(data.get("occurred_at") or envelope.get("occurred_at")) or utcnow()
    # The envelope names the actor and request too; the data wins when both do.
    actor = envelope.get("actor") or {}
    data = dict(data)
    data.setdefault("actor_id", actor.get("user_id"))
    data.setdefault("actor_role", actor.get("role"))
    data.setdefault("request_id", envelope.get("request_id"))
    data.setdefault("service", envelope.get("producer"))
    if data.get("outcome") not in OUTCOMES:
        data["outcome"] = "success"
    entry = _entry(entry_id, occurred_at, data)
    values = {column.key: getattr(entry, column.key) for column in AuditEntry.__table__.columns
              if column.key in vars(entry)}
    statement = dialect_insert(session)(AuditEntry).values(**values).on_conflict_do_nothing(index_elements=["id"])
    return session.execute(statement).rowcount == 1


def _entry(entry_id, occurred_at, data):
    return AuditEntry(
        id=entry_id,
        occurred_at=occurred_at,
        service=(data.get("service") or "unknown")[:40],
        actor_id=data.get("actor_id"),
        actor_role=data.get("actor_role"),
        api_key_id=data.get("api_key_id"),
        client_ip=data.get("client_ip"),
        request_id=data.get("request_id"),
        entity_type=(data.get("entity_type") or "unknown")[:60],
        entity_id=None if data.get("entity_id") is None else str(data["entity_id"])[:64],
        action=(data.get("action") or "unknown")[:100],
        outcome=data.get("outcome") or "success",
        changes=data.get("changes"),
        detail=data.get("detail"),
    )


def _parse_time(text):
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def masked_email(email):
    return mask(email) if email else None


# --- reading ----------------------------------------------------------------------

def parse_time_filter(name, text):
    """An ISO datetime query parameter (a date alone is midnight UTC); 422 naming it when not one."""
    if text is None or text == "":
        return None
    value = _parse_time(text.strip().replace("Z", "+00:00") if isinstance(text, str) else None)
    if value is None:
        raise ValidationFailed(f"{name} is not a date and time.",
                               {name: ["Use an ISO 8601 date and time, like 2026-12-01T09:30:00Z."]})
    return value


def list_entries(session, filters, limit=None, cursor=None):
    """One page of entries, newest first: {"items": [AuditEntry], "next_cursor": str | None}.

    ``filters``: actor (user id), entity_type, entity_id, action, from, to
    (datetimes; from inclusive, to exclusive).
    """
    limit = check_limit(limit)
    query = select(AuditEntry)
    if filters.get("actor"):
        query = query.where(AuditEntry.actor_id == filters["actor"])
    for name in ("entity_type", "entity_id", "action"):
        if filters.get(name):
            query = query.where(getattr(AuditEntry, name) == filters[name])
    if filters.get("from") is not None:
        query = query.where(AuditEntry.occurred_at >= filters["from"])
    if filters.get("to") is not None:
        query = query.where(AuditEntry.occurred_at < filters["to"])
    rows, next_cursor = keyset_page(session, query, AuditEntry.occurred_at, AuditEntry.id, descending=True,
                                    limit=limit, cursor=cursor)
    return {"items": rows, "next_cursor": next_cursor}


def to_dict(entry):
    return {field: getattr(entry, field) for field in ENTRY_FIELDS}
