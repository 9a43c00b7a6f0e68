"""Request and response bodies of the API-key routes."""
from marshmallow import Schema, fields, validate

from crm_common.validation import StrictSchema

SCOPES_DESCRIPTION = ("What the key may call: <resource>:read (GET) or <resource>:write (other methods), the "
                      "resource being the route's tag with spaces as dashes (customers:read, orders:write, "
                      "price-lists:read ...). Sign-in, users, API keys and the audit log never accept a key.")


class ApiKeyCreateRequest(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200),
                         metadata={"description": "What the key is for, e.g. the integration's name"})
    scopes = fields.List(fields.String(validate=validate.Length(min=3, max=64)), required=True,
                         validate=validate.Length(min=1, max=100), metadata={"description": SCOPES_DESCRIPTION})
    expires_at = fields.AwareDateTime(allow_none=True, metadata={
        "description": "When the key stops working (ISO 8601 with offset); none: until revoked"})
    rate_limit_per_minute = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=100000), metadata={
        "description": "Requests a minute for this key; none: the gateway's default (CRM_RATE_LIMIT_PER_MINUTE)"})


class ApiKeyResponse(Schema):
    """An API key as listed: never its secret."""

    id = fields.String(required=True)
    name = fields.String(required=True)
    scopes = fields.List(fields.String(), required=True)
    created_by = fields.String(required=True, metadata={
        "format": "uuid", "description": "The admin the key acts as; what it creates is theirs"})
    rate_limit_per_minute = fields.Integer(allow_none=True, required=True)
    created_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(allow_none=True, required=True)
    revoked_at = fields.DateTime(allow_none=True, required=True)
    last_used_at = fields.DateTime(allow_none=True, required=True, metadata={
        "description": "When the key was last used, to the minute"})


class ApiKeyCreatedResponse(ApiKeyResponse):
    key = fields.String(required=True, metadata={
        "description": "The key, crm_<id>_<secret>: send it as X-API-Key. Shown only in this answer."})


class ApiKeyPage(Schema):
    items = fields.List(fields.Nested(ApiKeyResponse), required=True)
    next_cursor = fields.String(allow_none=True, required=True)
