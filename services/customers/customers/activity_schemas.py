"""Validation and output shapes of contacts, follow-ups and saved customer views."""
from datetime import timedelta, timezone

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from crm_common.errors import ValidationFailed
from crm_common.pagination import parse_sort
from crm_common.types import utcnow
from crm_common.validation import PatchSchema

from customers import schemas as customer_schemas

FOLLOWUP_TYPES = ("call", "meeting", "email", "visit", "note")
# Clocks of phones and laptops drift: a follow-up "now" may arrive a little
# ahead of ours, but one logged for next week is a plan, not a fact.
MAX_CLOCK_SKEW = timedelta(minutes=5)


def _utc_datetime(**kwargs):
    # A timestamp without an offset is read as UTC, as everywhere on our wire.
    return fields.AwareDateTime(default_timezone=timezone.utc, **kwargs)


# --- contacts ----------------------------------------------------------------

class ContactFields(customer_schemas.ContactDetailsIn):
    """What a caller may set on a contact; anything else (id, version...) is refused.

    Phones and emails follow the customer's own rules (E.164 in the default
    region, lower-cased emails, both de-duplicated): one way to reach someone.
    """

    class Meta(customer_schemas.Strict.Meta):
        exclude = ("address", "id_number")  # a contact is reached, not identified

    name = fields.String(validate=validate.Length(min=1, max=200))
    title = fields.String(allow_none=True, validate=validate.Length(max=100))
    is_primary = fields.Boolean()
    notes = fields.String(allow_none=True, validate=validate.Length(max=10000))


class ContactCreate(ContactFields):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))


class ContactUpdate(ContactFields, PatchSchema):
    pass


class ContactOut(Schema):
    id = fields.String()
    customer_id = fields.String()
    name = fields.String()
    title = fields.String(allow_none=True)
    phones = fields.List(fields.String())
    emails = fields.List(fields.String())
    is_primary = fields.Boolean()
    notes = fields.String(allow_none=True)
    created_by = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    version = fields.Integer()


# --- follow-ups --------------------------------------------------------------

class FollowupCreate(customer_schemas.Strict):
    type = fields.String(required=True, validate=validate.OneOf(FOLLOWUP_TYPES))
    occurred_at = _utc_datetime(load_default=utcnow)
    summary = fields.String(required=True, validate=validate.Length(min=1, max=5000))
    outcome = fields.String(allow_none=True, validate=validate.Length(max=5000))
    next_followup_at = _utc_datetime(allow_none=True)

    @validates_schema
    def _in_order(self, data, **kwargs):
        occurred_at = data.get("occurred_at")
        if occurred_at is None:
            return
        if occurred_at > utcnow() + MAX_CLOCK_SKEW:
            raise ValidationError({"occurred_at": [
                "Must not be in the future: log a follow-up once it happened, and plan the next one "
                "with next_followup_at."]})
        next_at = data.get("next_followup_at")
        if next_at is not None and next_at <= occurred_at:
            raise ValidationError({"next_followup_at": ["Must be after occurred_at."]})


class FollowupOut(Schema):
    id = fields.String()
    customer_id = fields.String()
    type = fields.String()
    occurred_at = fields.DateTime()
    summary = fields.String()
    outcome = fields.String(allow_none=True)
    next_followup_at = fields.DateTime(allow_none=True)
    owner_id = fields.String(allow_none=True)
    owner_team_id = fields.String(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    closed_by_followup_id = fields.String(allow_none=True)
    created_by = fields.String(allow_none=True)
    created_at = fields.DateTime()


class DueFollowupOut(FollowupOut):
    """An item of the day plan: the follow-up and the name of its customer."""

    customer_name = fields.String()


class DueFollowupsQuery(customer_schemas.Strict):
    owner_id = fields.UUID()
    due_before = _utc_datetime()

    @post_load
    def _strings(self, data, **kwargs):
        if "owner_id" in data:
            data["owner_id"] = str(data["owner_id"])
        return data


# --- saved views -------------------------------------------------------------

def sort_errors(sort):
    """Messages for a sort that customer lists would refuse (empty when it is fine)."""
    try:
        parse_sort(sort, customer_schemas.SORTABLE)
    except ValidationFailed as error:
        return error.errors["sort"]
    return []


class ViewCreate(customer_schemas.Strict):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    filters = fields.Dict(keys=fields.String(), load_default=dict)
    sort = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=30))

    @validates_schema
    def _usable_by_the_customer_list(self, data, **kwargs):
        # The filters are stored as given (a later list call loads them again),
        # but a view that the list would refuse is refused now, while the
        # user still knows what they meant. Messages name the filter, e.g. filters.tier.
        errors = {}
        try:
            customer_schemas.CustomerFilters().load(data.get("filters") or {})
        except ValidationError as error:
            messages = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
            errors.update({f"filters.{name}": value for name, value in messages.items()})
        bad_sort = sort_errors(data["sort"]) if data.get("sort") else []
        if bad_sort:
            errors["sort"] = bad_sort
        if errors:
            raise ValidationError(errors)


class ViewOut(Schema):
    id = fields.String()
    name = fields.String()
    filters = fields.Dict()
    sort = fields.String(allow_none=True)
    created_at = fields.DateTime()
