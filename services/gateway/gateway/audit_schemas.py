"""Query and response of GET /audit (the OpenAPI document is built from these)."""
from marshmallow import Schema, fields

from gateway.schemas import PageQuery

TIME = "ISO 8601 date and time, e.g. 2026-12-01T09:30:00Z (without an offset: UTC)"


class AuditQuery(PageQuery):
    actor = fields.String(metadata={"description": "Only entries by this user (id)"})
    entity_type = fields.String(metadata={"description": "customer, opportunity, task, user, api_key ..."})
    entity_id = fields.String(metadata={"description": "Only entries about this record"})
    action = fields.String(metadata={"description": "e.g. customer.updated, user.login_failed, permission.refused"})
    from_ = fields.DateTime(data_key="from", metadata={"description": f"Entries at or after this time: {TIME}"})
    to = fields.DateTime(metadata={"description": f"Entries before this time: {TIME}"})


class AuditEntryResponse(Schema):
    """One audit entry. PII values in changes and detail are masked (j***@example.com, *******5678)."""

    id = fields.String(required=True, metadata={"format": "uuid"})
    occurred_at = fields.DateTime(required=True)
    service = fields.String(required=True, metadata={"description": "The service that recorded it"})
    actor_id = fields.String(allow_none=True, required=True, metadata={
        "description": "The user who acted; null for a failed sign-in or the system"})
    actor_role = fields.String(allow_none=True, required=True, metadata={"description": "Their role, or system"})
    api_key_id = fields.String(allow_none=True, required=True, metadata={
        "description": "The API key the request came with, if any"})
    client_ip = fields.String(allow_none=True, required=True, metadata={
        "description": "The client address (X-Forwarded-For is honoured from CRM_TRUSTED_PROXIES only)"})
    request_id = fields.String(allow_none=True, required=True, metadata={
        "description": "The X-Request-ID of the request that caused it"})
    entity_type = fields.String(required=True)
    entity_id = fields.String(allow_none=True, required=True)
    action = fields.String(required=True, metadata={"description": "<entity_type>.<verb>, e.g. customer.merged"})
    outcome = fields.String(required=True, metadata={"enum": ["success", "failure", "refused"]})
    changes = fields.Dict(allow_none=True, required=True, metadata={
        "description": 'The changed fields: {"field": {"old": x, "new": y}}, PII masked'})
    detail = fields.Dict(allow_none=True, required=True, metadata={
        "description": "What else there is to say (counts, the other record of a merge ...), PII masked"})


class AuditPage(Schema):
    items = fields.List(fields.Nested(AuditEntryResponse), required=True)
    next_cursor = fields.String(allow_none=True, required=True)
