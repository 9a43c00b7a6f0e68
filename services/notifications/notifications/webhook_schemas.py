"""Webhook subscriptions and deliveries: validation in, the shape out."""
import re

from marshmallow import Schema, ValidationError, fields, validate

from crm_common.validation import PatchSchema, StrictSchema

# An exact type ("order.placed"), every type of a family ("order.*"), or everything ("*").
EVENT_TYPE_PATTERN = re.compile(r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?)$")
EVENT_TYPE_MESSAGE = 'Each event type is exact ("order.placed"), a prefix ("order.*") or "*".'
MAX_EVENT_TYPES = 100
SECRET_LENGTH = validate.Length(min=16, max=200)
DELIVERY_STATUSES = ("pending", "succeeded", "failed")


def _event_type(value):
    if not EVENT_TYPE_PATTERN.match(value):
        raise ValidationError(EVENT_TYPE_MESSAGE)
    # The audit trail is no integration's business (notifications.webhooks.INTERNAL_EVENT_TYPES).
    if value == "audit.*" or value == "audit.recorded":
        raise ValidationError("Audit events cannot be subscribed to; admins read them at GET /audit.")


class EventTypes(fields.List):
    def __init__(self, **kwargs):
        super().__init__(fields.String(validate=_event_type),
                         validate=validate.Length(min=1, max=MAX_EVENT_TYPES), **kwargs)


class WebhookWritable(StrictSchema):
    url = fields.String(validate=validate.Length(min=1, max=2000))
    event_types = EventTypes()
    secret = fields.String(validate=SECRET_LENGTH)
    active = fields.Boolean()
    description = fields.String(allow_none=True, validate=validate.Length(max=200))
    allow_private_network = fields.Boolean()


class WebhookCreate(WebhookWritable):
    url = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    event_types = EventTypes(required=True)
    # Left out or null: the service generates one.
    secret = fields.String(allow_none=True, validate=SECRET_LENGTH)
    active = fields.Boolean(load_default=True)
    allow_private_network = fields.Boolean(load_default=False)


class WebhookUpdate(WebhookWritable, PatchSchema):
    """Every field optional, at least one. A new secret replaces the old one at once."""


class WebhookOut(Schema):
    id = fields.String()
    url = fields.String()
    event_types = fields.List(fields.String())
    # The secret is shown once, on creation; afterwards only its end, to tell secrets apart.
    secret_hint = fields.Function(lambda webhook: "…" + webhook.secret[-4:])
    active = fields.Boolean()
    description = fields.String(allow_none=True)
    allow_private_network = fields.Boolean()
    created_by = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    version = fields.Integer()


class WebhookCreatedOut(WebhookOut):
    secret = fields.String()


class WebhookAttemptOut(Schema):
    attempted_at = fields.DateTime()
    status_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    duration_ms = fields.Integer(allow_none=True)


class WebhookDeliveryOut(Schema):
    id = fields.String()
    webhook_id = fields.String()
    event_id = fields.String()
    event_type = fields.String()
    status = fields.String()
    attempt_count = fields.Function(lambda delivery: delivery.attempts)
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    next_attempt_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    # Every POST of this delivery, oldest first.
    attempts = fields.List(fields.Nested(WebhookAttemptOut))
