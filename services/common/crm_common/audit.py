"""The audit trail: who did what, when, from where, to which record.

An entry is written in the same transaction as the change it describes, so a
rolled-back change leaves no entry and a committed one always has one. In a
service the entry goes out through the outbox as the event ``audit.recorded``;
the gateway consumes those into its ``audit_entries`` table, the one store
``GET /api/v1/audit`` reads (the gateway writes its own entries there directly).

Two ways in:

* ``record_audit(...)`` for what a plain row diff does not say (a merge, an
  export, an import job, a key rotation, a login).
* ``audit_model(Model, "customer", "customers", pii_fields=...)`` registers an
  ORM model; a flush listener that ``crm_common.db.Database`` installs on the
  service's session factory then writes ``<type>.created``, ``<type>.updated``
  (only the changed columns, old -> new) and ``<type>.deleted`` for it. A soft
  delete (``deleted_at`` None -> a value) is ``<type>.deleted`` and its
  reverse ``<type>.restored``.

The actor of automatic entries is the session's context: ``session.info``
[``AUDIT_CONTEXT``] holds a RequestContext or a callable returning one
(``Database`` puts a callable reading the worker's context data there, so a
``RunAs`` switch is seen); code writing with a session of its own sets it with
``set_audit_context``. Without one the entry is the system's.

PII never enters the trail in clear: values of the fields named ``pii_fields``
are masked (``mask``) leaf by leaf, wherever they are nested.
"""
import datetime
import decimal
import logging
import re
import uuid

from sqlalchemy import event, inspect
from sqlalchemy.orm import attributes

from crm_common.context import RequestContext

log = logging.getLogger(__name__)

AUDIT_EVENT = "audit.recorded"
AUDIT_CONTEXT = "crm_audit_context"
OUTCOMES = ("success", "failure", "refused")

# Columns whose change says nothing a reader of the trail wants to know.
DEFAULT_IGNORED = ("updated_at", "version", "created_at", "search_vector", "search_text")
SOFT_DELETE_COLUMN = "deleted_at"

_EMAIL = re.compile(r"^\s*([^@\s])[^@\s]*@([^@\s]+)\s*$")
_PHONE = re.compile(r"^[\s+()./\-0-9]+$")


# --- masking ------------------------------------------------------------------

def mask(value):
    """The value as the audit trail may show it: enough to recognise, not to use.

    An email keeps its first letter and domain ("j***@example.com"), a phone
    its last four digits ("*******5678"); anything else is "***". None stays
    None, so "it was empty" is still visible.
    """
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if text == "":
        return ""
    email = _EMAIL.match(text)
    if email:
        return f"{email.group(1)}***@{email.group(2)}"
    if _PHONE.match(text):
        digits = re.sub(r"\D", "", text)
        if len(digits) >= 7:
            return "*" * (len(digits) - 4) + digits[-4:]
    return "***"


def mask_value(value):
    """``mask`` applied to every leaf of a JSON-like value (dicts keep their keys)."""
    if isinstance(value, dict):
        return {key: mask_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_value(item) for item in value]
    return mask(value)


def _mask_nested(value, pii_fields):
    # Inside a non-PII value (a JSON column), keys named as PII are masked.
    if isinstance(value, dict):
        return {key: mask_value(item) if key in pii_fields else _mask_nested(item, pii_fields)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask_nested(item, pii_fields) for item in value]
    return value


def mask_changes(changes, pii_fields):
    """{"field": {"old": x, "new": y}} with the PII fields' values masked leaf by leaf.

    A field named in ``pii_fields`` is masked entirely; inside other values
    (nested dicts such as ``contact: {"phones": [...]}``) any key named in
    ``pii_fields`` is masked too.
    """
    if not changes:
        return changes
    pii = set(pii_fields or ())
    masked = {}
    for field, change in changes.items():
        if field in pii:
            masked[field] = mask_value(change)
        else:
            masked[field] = _mask_nested(change, pii)
    return masked


# --- recording ----------------------------------------------------------------

def audit_data(context, producer, action, entity_type, entity_id, changes=None, detail=None,
               outcome="success", occurred_at=None):
    """The entry as ``audit.recorded`` carries it (and the gateway stores it)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
    context = context or RequestContext.system()
    return {
        "service": producer,
        "occurred_at": (occurred_at or datetime.datetime.now(datetime.timezone.utc)).isoformat(),
        "actor_id": context.user_id,
        "actor_role": context.role,
        "team_id": context.team_id,
        "api_key_id": context.api_key_id,
        "client_ip": context.client_ip,
        "request_id": context.request_id,
        "entity_type": entity_type,
        "entity_id": None if entity_id is None else str(entity_id),
        "action": action,
        "outcome": outcome,
        "changes": _jsonable(changes) if changes else None,
        "detail": _jsonable(detail) if detail else None,
    }


def record_audit(session, context, producer, action, entity_type, entity_id, changes=None, detail=None,
                 outcome="success"):
    """Write an audit entry in the caller's transaction (through the outbox); returns the event id.

    ``changes`` is {"field": {"old": x, "new": y}}, already masked by the
    caller (``mask_changes``); ``detail`` is free-form JSON (counts, the other
    record of a merge). Neither may hold PII in clear.
    """
    from crm_common.outbox import record_event

    context = context or RequestContext.system()
    data = audit_data(context, producer, action, entity_type, entity_id, changes, detail, outcome)
    envelope = record_event(session, producer, AUDIT_EVENT, data, context)
    return envelope["event_id"]


def set_audit_context(session, context):
    """Whose changes the flush listener records for this session (a RequestContext or a callable)."""
    session.info[AUDIT_CONTEXT] = context
    return session


def session_context(session):
    value = session.info.get(AUDIT_CONTEXT)
    if callable(value):
        value = value()
    return value or RequestContext.system()


def context_from_worker_data(data):
    """The RequestContext of a worker's context data; a worker nobody called (a timer) acts as the system."""
    context = RequestContext.from_context_data(data)
    if context.user_id is None and context.role is None:
        return RequestContext.system(context.request_id)
    return context


# --- automatic entries for registered models -------------------------------------------

class AuditedModel:
    def __init__(self, model_class, entity_type, producer, pii_fields, ignored_fields, id_attr):
        self.model_class = model_class
        self.entity_type = entity_type
        self.producer = producer
        self.pii_fields = tuple(pii_fields)
        self.ignored_fields = set(ignored_fields)
        self.id_attr = id_attr


_registry: dict[type, AuditedModel] = {}


def audit_model(model_class, entity_type, producer, pii_fields=(), ignored_fields=DEFAULT_IGNORED,
                id_attr="id"):
    """Audit every create, update and delete of ``model_class`` instances automatically."""
    _registry[model_class] = AuditedModel(model_class, entity_type, producer, pii_fields, ignored_fields,
                                          id_attr)
    return model_class


def audited(instance):
    for cls in type(instance).__mro__:
        spec = _registry.get(cls)
        if spec is not None:
            return spec
    return None


def install_audit_listener(session_factory):
    """Record entries for registered models on every flush of sessions made by ``session_factory``."""
    if not event.contains(session_factory, "after_flush", _after_flush):
        event.listen(session_factory, "after_flush", _after_flush)
    return session_factory


def _after_flush(session, _flush_context):
    # after_flush, not before_flush: primary keys generated by the INSERT are
    # known here, and attribute history still holds the old values until the
    # flush finishes.
    entries = []
    for instance in list(session.new):
        spec = audited(instance)
        if spec is not None:
            entries.append((spec, instance, f"{spec.entity_type}.created", _created_changes(spec, instance)))
    for instance in list(session.dirty):
        spec = audited(instance)
        if spec is None or not session.is_modified(instance, include_collections=False):
            continue
        changes = _updated_changes(spec, instance)
        if not changes:
            continue
        verb = "updated"
        soft = changes.get(SOFT_DELETE_COLUMN)
        if soft is not None:
            if soft["old"] is None and soft["new"] is not None:
                verb = "deleted"
            elif soft["old"] is not None and soft["new"] is None:
                verb = "restored"
        entries.append((spec, instance, f"{spec.entity_type}.{verb}", changes))
    for instance in list(session.deleted):
        spec = audited(instance)
        if spec is not None:
            entries.append((spec, instance, f"{spec.entity_type}.deleted", None))
    if not entries:
        return
    context = session_context(session)
    for spec, instance, action, changes in entries:
        record_audit(session, context, spec.producer, action, spec.entity_type,
                     getattr(instance, spec.id_attr, None),
                     changes=mask_changes(changes, spec.pii_fields) if changes else None)


def _columns(spec, instance):
    mapper = inspect(type(instance))
    for prop in mapper.column_attrs:
        if prop.key in spec.ignored_fields:
            continue
        yield prop.key


def _created_changes(spec, instance):
    changes = {}
    for key in _columns(spec, instance):
        value = instance.__dict__.get(key)
        if value is None or key == spec.id_attr:
            continue
        changes[key] = {"old": None, "new": value}
    return changes


def _updated_changes(spec, instance):
    changes = {}
    for key in _columns(spec, instance):
        history = attributes.get_history(instance, key, passive=attributes.PASSIVE_NO_INITIALIZE)
        if not history.has_changes():
            continue
        old = history.deleted[0] if history.deleted else None
        new = history.added[0] if history.added else None
        if old == new:
            continue
        changes[key] = {"old": old, "new": new}
    return changes


def _jsonable(value):
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "value") and hasattr(value, "name") and not isinstance(value, (str, int, float)):
        return value.value  # an Enum
    if isinstance(value, bytes):
        return "***"
    return value
