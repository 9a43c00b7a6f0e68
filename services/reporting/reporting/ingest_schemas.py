"""What reporting reads from the other services' events and reporting pages.

Tolerant readers: fields reporting does not keep are ignored (Meta.unknown =
EXCLUDE), so the sources can add fields without breaking reporting. Each
record is read the same way whether an event or a rebuild page carries it.
"""
from datetime import timezone

from marshmallow import EXCLUDE, Schema, fields, validate


class _Tolerant(Schema):
    class Meta:
        unknown = EXCLUDE


def _when(**kwargs):
    return fields.AwareDateTime(default_timezone=timezone.utc, **kwargs)


def _optional(field_class=fields.String, **kwargs):
    return field_class(allow_none=True, load_default=None, **kwargs)


class CustomerSnapshot(_Tolerant):
    """A customer as customer.created/updated/deleted carry it (and customers.reporting_page)."""

    id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    name = _optional()
    owner_id = _optional()
    owner_team_id = _optional()
    lifecycle_stage = fields.String(required=True)
    # {stage: iso date-time}: when the customer last entered each stage.
    lifecycle_dates = fields.Dict(keys=fields.String(), values=_when(allow_none=True),
                                  allow_none=True, load_default=None)
    region = _optional()
    industry = _optional()
    tier = _optional()
    source = _optional()
    created_at = _when(required=True)
    deleted_at = _when(allow_none=True, load_default=None)


class ImportedCustomers(_Tolerant):
    """customer.imported: a batch of new customers from an import, each as customer.created carries it."""

    customers = fields.List(fields.Nested(CustomerSnapshot), required=True)


class FollowupSnapshot(_Tolerant):
    """A follow-up as followup.logged carries it."""

    id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    customer_id = fields.String(required=True)
    owner_id = _optional()
    owner_team_id = _optional()
    logged_by = _optional()
    type = fields.String(required=True)
    occurred_at = _when(required=True)


class CustomerMerged(_Tolerant):
    """customer.merged: ``source_id`` was merged into ``target_id`` (the source is deleted)."""

    source_id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    target_id = fields.String(required=True, validate=validate.Length(min=1, max=36))


class OrderLineSnapshot(_Tolerant):
    position = fields.Integer(required=True)
    product_id = _optional()
    sku = _optional()
    description = _optional()
    quantity = fields.Decimal(required=True)
    total = fields.Decimal(required=True)


class OrderSnapshot(_Tolerant):
    """The whole order, as every order.* event carries it."""

    id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    customer_id = fields.String(required=True)
    owner_id = _optional()
    owner_team_id = _optional()
    status = fields.String(required=True)
    currency = fields.String(required=True, validate=validate.Length(equal=3))
    total = fields.Decimal(required=True)
    paid_amount = fields.Decimal(load_default=None, allow_none=True)
    confirmed_at = _when(allow_none=True, load_default=None)
    lines = fields.List(fields.Nested(OrderLineSnapshot), load_default=list)


class StageChangeSnapshot(_Tolerant):
    """One entry of an opportunity into a stage (opportunity.created/stage_changed's "stage_change")."""

    stage_change_id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    opportunity_id = fields.String(required=True)
    pipeline_id = fields.String(required=True)
    owner_id = _optional()
    owner_team_id = _optional()
    from_stage = _optional()
    to_stage = fields.String(required=True)
    to_stage_position = _optional(fields.Integer)
    to_outcome = fields.String(required=True)
    changed_at = _when(required=True)
    seconds_in_previous_stage = _optional(fields.Integer)


class OpportunitySnapshot(_Tolerant):
    """An opportunity as opportunity.* events carry it."""

    id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    customer_id = fields.String(required=True)
    owner_id = _optional()
    owner_team_id = _optional()
    pipeline_id = fields.String(required=True)
    stage = fields.String(required=True)
    stage_position = _optional(fields.Integer)
    status = fields.String(required=True)
    amount = fields.Decimal(required=True)
    currency = fields.String(required=True, validate=validate.Length(equal=3))
    probability = fields.Integer(allow_none=True, load_default=0)
    expected_close_date = _optional(fields.Date)
    created_at = _when(required=True)
    closed_at = _when(allow_none=True, load_default=None)
    stage_change = fields.Nested(StageChangeSnapshot, allow_none=True, load_default=None)


class ContractSnapshot(_Tolerant):
    """A contract as contract.* events carry it."""

    id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    customer_id = fields.String(required=True)
    owner_id = _optional()
    owner_team_id = _optional()
    title = _optional()
    status = fields.String(required=True)
    value = fields.Decimal(required=True)
    currency = fields.String(required=True, validate=validate.Length(equal=3))
    start_date = fields.Date(required=True)
    end_date = fields.Date(required=True)
