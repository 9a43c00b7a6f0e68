"""marshmallow schemas of every request body and response: validation in,
serialisation out, and the source of the OpenAPI document.

The customer, report and notification schemas describe what other services
return; the gateway passes those payloads through unchanged (the owning
service validates input and shapes output), so the schemas here document the
contract rather than enforce it.
"""
from marshmallow import INCLUDE, RAISE, Schema, fields, pre_load, validate

from crm_common.context import ROLES
from crm_common.pagination import MAX_LIMIT

MIN_PASSWORD_LENGTH = 12
# argon2 hashes whatever it is given: bound the work an anonymous caller can ask for.
MAX_PASSWORD_LENGTH = 1024


def _strip_strings(data, keys):
    if isinstance(data, dict):
        data = dict(data)
        for key in keys:
            if isinstance(data.get(key), str):
                data[key] = data[key].strip()
    return data


# --- auth --------------------------------------------------------------------

class LoginRequest(Schema):
    class Meta:
        unknown = RAISE

    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(required=True, load_only=True,
                             validate=validate.Length(min=1, max=MAX_PASSWORD_LENGTH))


class RefreshRequest(Schema):
    class Meta:
        unknown = RAISE

    refresh_token = fields.String(required=True, validate=validate.Length(min=1, max=200))


class TokenPairResponse(Schema):
    access_token = fields.String(required=True, metadata={"description": "JWT; send as Authorization: Bearer <token>"})
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = fields.Integer(required=True, metadata={"description": "Seconds the access token stays valid"})
    refresh_token = fields.String(required=True,
                                  metadata={"description": "Single use: POST it to /auth/refresh for a new pair"})


# --- users -------------------------------------------------------------------

class UserCreateRequest(Schema):
    class Meta:
        unknown = RAISE

    email = fields.Email(required=True, validate=validate.Length(max=254))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    team_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, load_only=True,
                             validate=validate.Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH))

    @pre_load
    def _trim(self, data, **kwargs):
        return _strip_strings(data, ("email", "name", "team_id"))


class UserResponse(Schema):
    """A user as the API shows it: never the password hash."""

    id = fields.String(required=True, metadata={"format": "uuid"})
    email = fields.String(required=True, metadata={"format": "email"})
    name = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    team_id = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    version = fields.Integer(required=True)


class UserPage(Schema):
    items = fields.List(fields.Nested(UserResponse), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class PageQuery(Schema):
    limit = fields.Integer(validate=validate.Range(min=1, max=MAX_LIMIT),
                           metadata={"description": f"Page size, 1 to {MAX_LIMIT} (default 50)"})
    cursor = fields.String(metadata={"description": "next_cursor of the previous page"})


# --- customers (served by the customers service) -----------------------------

CUSTOMER_KINDS = ("person", "company")
LIFECYCLE_STAGES = ("lead", "prospect", "customer", "churned")
TIERS = ("A", "B", "C", "D")


class CustomerCreateRequest(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(CUSTOMER_KINDS))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    email = fields.Email(allow_none=True)
    phone = fields.String(allow_none=True, metadata={"example": "+8613800000000"})
    owner_id = fields.String(allow_none=True, metadata={
        "format": "uuid", "description": "Defaults to the caller; must be an existing user"})
    lifecycle_stage = fields.String(validate=validate.OneOf(LIFECYCLE_STAGES))
    tier = fields.String(allow_none=True, validate=validate.OneOf(TIERS))
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=50)))
    region = fields.String(allow_none=True)
    industry = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)


class CustomerUpdateRequest(Schema):
    """Every field optional; the owner is not changed here."""

    kind = fields.String(validate=validate.OneOf(CUSTOMER_KINDS))
    name = fields.String(validate=validate.Length(min=1, max=200))
    email = fields.Email(allow_none=True)
    phone = fields.String(allow_none=True)
    lifecycle_stage = fields.String(validate=validate.OneOf(LIFECYCLE_STAGES))
    tier = fields.String(allow_none=True, validate=validate.OneOf(TIERS))
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=50)))
    region = fields.String(allow_none=True)
    industry = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)


class CustomerResponse(Schema):
    id = fields.String(required=True, metadata={"format": "uuid"})
    kind = fields.String(required=True, validate=validate.OneOf(CUSTOMER_KINDS))
    name = fields.String(required=True)
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    owner_id = fields.String(allow_none=True)
    owner_team_id = fields.String(allow_none=True, metadata={"description": "The owner's team"})
    lifecycle_stage = fields.String(validate=validate.OneOf(LIFECYCLE_STAGES))
    lifecycle_changed_at = fields.DateTime(metadata={"description": "When the stage last changed"})
    tier = fields.String(allow_none=True)
    tags = fields.List(fields.String())
    region = fields.String(allow_none=True)
    industry = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    deleted_at = fields.DateTime(allow_none=True)
    version = fields.Integer(required=True)


class CustomerPage(Schema):
    items = fields.List(fields.Nested(CustomerResponse), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class CustomerListQuery(PageQuery):
    q = fields.String(metadata={"description": "Matches name or email"})
    owner_id = fields.String(metadata={"format": "uuid"})
    lifecycle_stage = fields.String(validate=validate.OneOf(LIFECYCLE_STAGES))
    tier = fields.String(validate=validate.OneOf(TIERS))
    tag = fields.String()
    region = fields.String()
    include_deleted = fields.Boolean(metadata={"description": "Admins only"})
    sort = fields.String(metadata={"example": "-created_at",
                                   "description": "created_at, updated_at or name; prefix - for descending"})


CUSTOMER_FILTERS = ("q", "owner_id", "lifecycle_stage", "tier", "tag", "region", "include_deleted")


# --- reports and notifications (served by other services) --------------------

class CustomersSummaryResponse(Schema):
    """Aggregates computed by the reporting service, passed through as it returns them."""

    class Meta:
        unknown = INCLUDE


class NotificationResponse(Schema):
    """One entry of the caller's inbox, as the notifications service returns it."""

    class Meta:
        unknown = INCLUDE

    id = fields.String(metadata={"format": "uuid"})
    created_at = fields.DateTime()


class NotificationPage(Schema):
    items = fields.List(fields.Nested(NotificationResponse), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


# --- operations --------------------------------------------------------------

class ReadinessResponse(Schema):
    status = fields.String(required=True, validate=validate.OneOf(("ready", "degraded")))
    broker = fields.String(required=True, validate=validate.OneOf(("up", "down")))
    services = fields.Dict(keys=fields.String(), values=fields.String(validate=validate.OneOf(("up", "down"))),
                           required=True)


class Problem(Schema):
    """An error, as RFC 9457 application/problem+json."""

    type = fields.String(required=True, metadata={"format": "uri"})
    title = fields.String(required=True, metadata={"description": "Follows Accept-Language (en, zh-CN)"})
    status = fields.Integer(required=True)
    code = fields.String(required=True, metadata={"description": "Stable, for programs"})
    detail = fields.String(required=True)
    request_id = fields.String(allow_none=True)
    errors = fields.Dict(keys=fields.String(), metadata={
        "description": "Validation messages by field: {field: [message, ...]}"})
