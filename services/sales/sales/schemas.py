"""Validation of what comes in: the customer events sales keeps a replica from."""
from datetime import timezone

from marshmallow import EXCLUDE, Schema, fields, validate


class CustomerSnapshot(Schema):
    """The customer dict carried by customer.created/updated/deleted.

    A tolerant reader: fields sales does not keep are ignored, so the
    customers service can add fields without breaking sales.
    """

    class Meta:
        unknown = EXCLUDE

    id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    name = fields.String(required=True, validate=validate.Length(max=200))
    owner_id = fields.String(allow_none=True, load_default=None)
    owner_team_id = fields.String(allow_none=True, load_default=None)
    deleted_at = fields.AwareDateTime(allow_none=True, load_default=None, default_timezone=timezone.utc)


class ImportedCustomers(Schema):
    """customer.imported: a batch of new customers from an import, each as customer.created carries it."""

    class Meta:
        unknown = EXCLUDE

    customers = fields.List(fields.Nested(CustomerSnapshot), required=True)


class CustomerAssigned(Schema):
    """customer.assigned: the owner of the customer as of ``version``."""

    class Meta:
        unknown = EXCLUDE

    customer_id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    name = fields.String(required=True, validate=validate.Length(max=200))
    owner_id = fields.String(allow_none=True, load_default=None)
    owner_team_id = fields.String(allow_none=True, load_default=None)


class CustomerMerged(Schema):
    """customer.merged: the source customer was folded into the target."""

    class Meta:
        unknown = EXCLUDE

    target_id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    source_id = fields.String(required=True, validate=validate.Length(min=1, max=36))


class CustomerErased(Schema):
    """customer.erased: the customer's personal data was erased on request; scrub what we hold."""

    class Meta:
        unknown = EXCLUDE

    customer_id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    # The anonymised name the customer has now ("Erased customer <id prefix>").
    name = fields.String(load_default=None, validate=validate.Length(max=200))
