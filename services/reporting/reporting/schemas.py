"""Validation of what comes in (events, report filters), and the shape of what goes out."""
from datetime import timezone

from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

LIFECYCLE_STAGES = ("lead", "prospect", "customer", "churned")


class CustomerSnapshot(Schema):
    """The customer dict carried by customer.created/updated/deleted.

    A tolerant reader: fields this service does not keep are ignored, so the
    customers service can add fields without breaking reporting.
    """

    class Meta:
        unknown = EXCLUDE

    id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    owner_id = fields.String(allow_none=True, load_default=None)
    owner_team_id = fields.String(allow_none=True, load_default=None)
    lifecycle_stage = fields.String(required=True)
    region = fields.String(allow_none=True, load_default=None)
    industry = fields.String(allow_none=True, load_default=None)
    tier = fields.String(allow_none=True, load_default=None)
    source = fields.String(allow_none=True, load_default=None)
    created_at = fields.AwareDateTime(required=True, default_timezone=timezone.utc)
    deleted_at = fields.AwareDateTime(allow_none=True, load_default=None, default_timezone=timezone.utc)


class ImportedCustomers(Schema):
    """customer.imported: a batch of new customers from an import, each as customer.created carries it."""

    class Meta:
        unknown = EXCLUDE

    customers = fields.List(fields.Nested(CustomerSnapshot), required=True)


class SummaryFilters(Schema):
    """Filters of customers_summary; they narrow what the caller may see, never widen it."""

    class Meta:
        unknown = RAISE

    owner_id = fields.UUID()
    owner_team_id = fields.String(validate=validate.Length(min=1, max=64))
    region = fields.String(validate=validate.Length(min=1, max=100))
    industry = fields.String(validate=validate.Length(min=1, max=100))
    tier = fields.String(validate=validate.Length(min=1, max=10))
    source = fields.String(validate=validate.Length(min=1, max=100))
    # created_from <= created_at < created_to
    created_from = fields.AwareDateTime(default_timezone=timezone.utc)
    created_to = fields.AwareDateTime(default_timezone=timezone.utc)
