"""Documentation schemas of webhooks and their deliveries (served by the notifications service).

They mirror notifications.webhook_schemas; tests/test_api_contract.py keeps the two equal.
"""
from marshmallow import Schema, fields, validate

DELIVERY_STATUSES = ("pending", "succeeded", "failed")
EVENT_TYPES = {
    "description": 'Exact types ("order.placed"), prefixes ("order.*") or "*" for every event. Events of the '
                   "customers service (customer.created, customer.updated, customer.deleted, customer.merged, "
                   "customer.imported, customer.assigned, followup.logged) and of the sales service "
                   "(opportunity.*, quote.*, order.*, contract.*).",
    "example": ["customer.created", "order.*"],
}
ALLOW_PRIVATE = ("Allow a URL whose host is in loopback, private (RFC 1918), link-local, unique local or other "
                 "non-public ranges, which are refused otherwise (SSRF). Only admins manage webhooks, so only "
                 "an admin can set it; use it for an integration inside your own network.")


class WebhookWritable(Schema):
    url = fields.String(validate=validate.Length(min=1, max=2000), metadata={
        "example": "https://erp.example.com/crm-events",
        "description": "http or https, without credentials; its host must resolve to public addresses "
                       "(checked on saving and again before every POST) unless allow_private_network"})
    event_types = fields.List(fields.String(), metadata=EVENT_TYPES)
    secret = fields.String(validate=validate.Length(min=16, max=200), metadata={
        "description": "The HMAC key of X-CRM-Signature. A new one replaces the old one at once"})
    active = fields.Boolean(metadata={"description": "An inactive webhook's deliveries wait (for at most 24 hours)"})
    description = fields.String(allow_none=True, validate=validate.Length(max=200))
    allow_private_network = fields.Boolean(metadata={"description": ALLOW_PRIVATE})


class WebhookCreateRequest(WebhookWritable):
    url = fields.String(required=True, validate=validate.Length(min=1, max=2000),
                        metadata={"example": "https://erp.example.com/crm-events"})
    event_types = fields.List(fields.String(), required=True, metadata=EVENT_TYPES)
    secret = fields.String(allow_none=True, validate=validate.Length(min=16, max=200), metadata={
        "description": "The HMAC key of X-CRM-Signature; left out or null, one is generated. Shown in the "
                       "answer to this request only"})
    active = fields.Boolean(metadata={"description": "Default true"})
    allow_private_network = fields.Boolean(metadata={"description": ALLOW_PRIVATE + " Default false."})


class WebhookUpdateRequest(WebhookWritable):
    """Every field optional, at least one."""


class WebhookResponse(Schema):
    id = fields.String(required=True, metadata={"format": "uuid"})
    url = fields.String()
    event_types = fields.List(fields.String())
    secret_hint = fields.String(metadata={"example": "…a1b2", "description": "The end of the secret, never "
                                                                            "the secret"})
    active = fields.Boolean()
    description = fields.String(allow_none=True)
    allow_private_network = fields.Boolean()
    created_by = fields.String(allow_none=True, metadata={"format": "uuid"})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    version = fields.Integer(required=True)


class WebhookCreatedResponse(WebhookResponse):
    secret = fields.String(metadata={"description": "Shown here once: keep it to verify X-CRM-Signature"})


class WebhookPage(Schema):
    items = fields.List(fields.Nested(WebhookResponse), required=True, metadata={"description": "Newest first"})
    next_cursor = fields.String(allow_none=True)


class WebhookAttemptResponse(Schema):
    attempted_at = fields.DateTime()
    status_code = fields.Integer(allow_none=True, metadata={"description": "The receiver's HTTP status; null "
                                                                           "when there was no answer"})
    error = fields.String(allow_none=True, metadata={"description": "Why it did not succeed: a non-2xx status, "
                                                                    "a network error, a refused address"})
    duration_ms = fields.Integer(allow_none=True)


class WebhookDeliveryResponse(Schema):
    id = fields.String(required=True, metadata={"format": "uuid", "description": "Sent as X-CRM-Delivery"})
    webhook_id = fields.String(metadata={"format": "uuid"})
    event_id = fields.String(metadata={"format": "uuid", "description": "The envelope's event_id"})
    event_type = fields.String(metadata={"description": "Sent as X-CRM-Event"})
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES), metadata={
        "description": "pending until a 2xx answer (succeeded) or 24 hours of retries with exponential backoff "
                       "(failed)"})
    attempt_count = fields.Integer()
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    next_attempt_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    attempts = fields.List(fields.Nested(WebhookAttemptResponse), metadata={"description": "Oldest first"})


class WebhookDeliveryPage(Schema):
    items = fields.List(fields.Nested(WebhookDeliveryResponse), required=True,
                        metadata={"description": "Newest first"})
    next_cursor = fields.String(allow_none=True)
