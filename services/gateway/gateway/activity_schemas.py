"""Documentation schemas of contacts, follow-ups and saved customer views.

The customers service validates and shapes these payloads; the gateway passes
them through, so the schemas here document the contract (tests/test_api_contract.py
keeps them equal to the service's own schemas).
"""
from marshmallow import Schema, fields, validate

from gateway.schemas import PageQuery

FOLLOWUP_TYPES = ("call", "meeting", "email", "visit", "note")


# --- contacts ----------------------------------------------------------------

class ContactWritable(Schema):
    name = fields.String(validate=validate.Length(min=1, max=200))
    title = fields.String(allow_none=True, validate=validate.Length(max=100))
    phones = fields.List(fields.String(metadata={"example": "+86 138 0013 8000"}), metadata={
        "description": "Stored in E.164; a number without +country code is read in CRM_DEFAULT_PHONE_REGION (CN)"})
    emails = fields.List(fields.Email(), metadata={"description": "Lower-cased and de-duplicated"})
    is_primary = fields.Boolean(metadata={
        "description": "One primary contact per customer: setting it clears it on the others. "
                       "A customer's first contact is primary."})
    notes = fields.String(allow_none=True, validate=validate.Length(max=10000))


class ContactCreateRequest(ContactWritable):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))


class ContactUpdateRequest(ContactWritable):
    """Every field optional; at least one."""


class ContactResponse(Schema):
    id = fields.String(required=True, metadata={"format": "uuid"})
    customer_id = fields.String(required=True, metadata={"format": "uuid"})
    name = fields.String(required=True)
    title = fields.String(allow_none=True)
    phones = fields.List(fields.String())
    emails = fields.List(fields.String())
    is_primary = fields.Boolean()
    notes = fields.String(allow_none=True)
    created_by = fields.String(allow_none=True, metadata={"format": "uuid"})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    version = fields.Integer(required=True)


class ContactList(Schema):
    items = fields.List(fields.Nested(ContactResponse), required=True,
                        metadata={"description": "Primary first, then by name; at most 500"})


# --- follow-ups --------------------------------------------------------------

class FollowupCreateRequest(Schema):
    type = fields.String(required=True, validate=validate.OneOf(FOLLOWUP_TYPES))
    occurred_at = fields.DateTime(metadata={
        "description": "When it happened (default: now); at most 5 minutes in the future. UTC when no offset"})
    summary = fields.String(required=True, validate=validate.Length(min=1, max=5000))
    outcome = fields.String(allow_none=True, validate=validate.Length(max=5000))
    next_followup_at = fields.DateTime(allow_none=True, metadata={
        "description": "The next step, after occurred_at: it lands in the owner's day plan (GET /followups)"})


class FollowupResponse(Schema):
    id = fields.String(required=True, metadata={"format": "uuid"})
    customer_id = fields.String(required=True, metadata={"format": "uuid"})
    type = fields.String(required=True, validate=validate.OneOf(FOLLOWUP_TYPES))
    occurred_at = fields.DateTime(required=True)
    summary = fields.String(required=True)
    outcome = fields.String(allow_none=True)
    next_followup_at = fields.DateTime(allow_none=True)
    owner_id = fields.String(allow_none=True, metadata={"description": "The customer's owner when logged"})
    owner_team_id = fields.String(allow_none=True)
    closed_at = fields.DateTime(allow_none=True, metadata={
        "description": "Set when a later follow-up of the customer took over its next step"})
    closed_by_followup_id = fields.String(allow_none=True, metadata={"format": "uuid"})
    created_by = fields.String(allow_none=True, metadata={"format": "uuid"})
    created_at = fields.DateTime()


class FollowupPage(Schema):
    items = fields.List(fields.Nested(FollowupResponse), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class DueFollowupResponse(FollowupResponse):
    customer_name = fields.String(required=True)


class DueFollowupPage(Schema):
    items = fields.List(fields.Nested(DueFollowupResponse), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class DueFollowupsQuery(PageQuery):
    owner_id = fields.String(metadata={"format": "uuid", "description": "Whose day plan (default: the caller's)"})
    due_before = fields.DateTime(metadata={"description": "Default: the end of today (UTC)"})


# --- saved views -------------------------------------------------------------

class ViewCreateRequest(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100),
                         metadata={"description": "Unique among the caller's views"})
    filters = fields.Dict(keys=fields.String(), metadata={
        "description": "Query parameters of GET /customers, e.g. {\"tier\": \"A\", \"tag\": [\"vip\"]}"})
    sort = fields.String(allow_none=True, metadata={"example": "-created_at",
                                                    "description": "As the sort of GET /customers"})


class ViewResponse(Schema):
    id = fields.String(required=True, metadata={"format": "uuid"})
    name = fields.String(required=True)
    filters = fields.Dict(required=True)
    sort = fields.String(allow_none=True)
    created_at = fields.DateTime()


class ViewList(Schema):
    items = fields.List(fields.Nested(ViewResponse), required=True, metadata={"description": "By name"})
