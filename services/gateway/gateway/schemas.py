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

from gateway.i18n import ENGLISH, LANGUAGES

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
    language = fields.String(load_default=ENGLISH, validate=validate.OneOf(LANGUAGES),
                             metadata={"description": "The language of the emails the CRM sends this user"})
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
    language = fields.String(required=True, validate=validate.OneOf(LANGUAGES))
    active = fields.Boolean(required=True)
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
COMPANY_SIZES = ("1-9", "10-49", "50-249", "250-999", "1000+")
CUSTOM_FIELD_TYPES = ("text", "number", "boolean", "date", "choice")
MERGEABLE_FIELDS = ("kind", "name", "company", "contact", "lifecycle_stage", "tier", "region", "industry",
                    "source", "notes", "custom_fields")


class CompanyDoc(Schema):
    name = fields.String(allow_none=True, validate=validate.Length(max=200))
    industry = fields.String(allow_none=True)
    size = fields.String(allow_none=True, validate=validate.OneOf(COMPANY_SIZES))
    website = fields.Url(allow_none=True)


class AddressDoc(Schema):
    country = fields.String(allow_none=True)
    region = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    street = fields.String(allow_none=True)
    postcode = fields.String(allow_none=True)


class ContactDetailsDoc(Schema):
    phones = fields.List(fields.String(metadata={"example": "+86 138 0013 8000"}), metadata={
        "description": "Stored in E.164; a number without +country code is read in CRM_DEFAULT_PHONE_REGION (CN)"})
    emails = fields.List(fields.Email())
    address = fields.Nested(AddressDoc)
    id_number = fields.String(allow_none=True, validate=validate.Length(max=50), metadata={
        "description": "National ID, passport or company registration number (at most 50 characters); "
                       "personal data, stored encrypted"})


class CustomerWritable(Schema):
    kind = fields.String(validate=validate.OneOf(CUSTOMER_KINDS))
    name = fields.String(validate=validate.Length(min=1, max=200))
    company = fields.Nested(CompanyDoc)
    contact = fields.Nested(ContactDetailsDoc)
    lifecycle_stage = fields.String(validate=validate.OneOf(LIFECYCLE_STAGES))
    tier = fields.String(allow_none=True, validate=validate.OneOf(TIERS))
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=50)),
                       metadata={"description": "Trimmed and de-duplicated"})
    region = fields.String(allow_none=True)
    industry = fields.String(allow_none=True)
    source = fields.String(allow_none=True, metadata={"description": "Where the lead came from"})
    notes = fields.String(allow_none=True)
    custom_fields = fields.Dict(keys=fields.String(), metadata={
        "description": "Values of the fields defined at /customer-fields, by key"})
    external_id = fields.String(allow_none=True, metadata={
        "description": "The id in the system the customer came from; unique"})


class CustomerCreateRequest(CustomerWritable):
    kind = fields.String(required=True, validate=validate.OneOf(CUSTOMER_KINDS), metadata={
        "description": "A person needs at least one phone or email in contact"})
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    owner_id = fields.String(allow_none=True, metadata={
        "format": "uuid", "description": "Defaults to the caller; must be an existing user"})


class CustomerUpdateRequest(CustomerWritable):
    """Every field optional; the owner changes with POST /customers/{id}/assign."""


class CustomerResponse(Schema):
    id = fields.String(required=True, metadata={"format": "uuid"})
    kind = fields.String(required=True, validate=validate.OneOf(CUSTOMER_KINDS))
    name = fields.String(required=True)
    company = fields.Nested(CompanyDoc)
    contact = fields.Nested(ContactDetailsDoc)
    owner_id = fields.String(allow_none=True)
    owner_team_id = fields.String(allow_none=True, metadata={"description": "The owner's team"})
    lifecycle_stage = fields.String(validate=validate.OneOf(LIFECYCLE_STAGES))
    lifecycle_changed_at = fields.DateTime(metadata={"description": "When the stage last changed"})
    lifecycle_dates = fields.Dict(keys=fields.String(), values=fields.DateTime(), metadata={
        "description": "When the customer last entered each stage"})
    tier = fields.String(allow_none=True)
    tags = fields.List(fields.String())
    region = fields.String(allow_none=True)
    industry = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    custom_fields = fields.Dict(keys=fields.String())
    external_id = fields.String(allow_none=True)
    next_followup_at = fields.DateTime(allow_none=True, metadata={"description": "The next planned follow-up"})
    merged_into_id = fields.String(allow_none=True, metadata={"description": "Set when merged into another customer"})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    deleted_at = fields.DateTime(allow_none=True)
    erased_at = fields.DateTime(allow_none=True, metadata={
        "description": "Set when the person's data was erased on request: the record is anonymised"})
    version = fields.Integer(required=True)


class CustomerPage(Schema):
    items = fields.List(fields.Nested(CustomerResponse), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class CustomerListQuery(PageQuery):
    q = fields.String(metadata={"description": "Keywords in name, company or contact names; any case, "
                                               "accents ignored, parts of words, Chinese or English"})
    kind = fields.String(validate=validate.OneOf(CUSTOMER_KINDS))
    owner_id = fields.String(metadata={"format": "uuid"})
    lifecycle_stage = fields.String(validate=validate.OneOf(LIFECYCLE_STAGES))
    tier = fields.String(validate=validate.OneOf(TIERS))
    tag = fields.List(fields.String(), metadata={"description": "Repeatable: customers with every tag given"})
    industry = fields.String()
    region = fields.String()
    source = fields.String()
    created_from = fields.DateTime(metadata={"description": "Created at or after (ISO 8601; UTC if no offset)"})
    created_to = fields.DateTime(metadata={"description": "Created at or before"})
    has_followup_due = fields.Boolean(metadata={"description": "Whose next follow-up date has come"})
    phone = fields.String(metadata={"description": "Exact match on any of the customer's phones, any spelling"})
    email = fields.String(metadata={"description": "Exact match on any of the customer's emails"})
    include_deleted = fields.Boolean(metadata={"description": "Admins only"})
    sort = fields.String(metadata={"example": "-created_at",
                                   "description": "created_at, updated_at, name or tier; prefix - for descending"})


# The list filters the gateway passes on (``tag`` may repeat).
CUSTOMER_FILTERS = ("q", "kind", "owner_id", "lifecycle_stage", "tier", "tag", "industry", "region", "source",
                    "created_from", "created_to", "has_followup_due", "phone", "email", "include_deleted")
REPEATABLE_FILTERS = ("tag",)


class CreateCustomerQuery(Schema):
    allow_duplicate = fields.Boolean(metadata={
        "description": "Create even when a customer with the same phone, email or name + company exists"})


class IncludeDeletedQuery(Schema):
    include_deleted = fields.Boolean(metadata={"description": "Admins only: also a deleted customer"})


class DuplicateCandidate(Schema):
    id = fields.String(allow_none=True, metadata={"description": "null when the caller may not see that customer"})
    name = fields.String(allow_none=True)
    owner_id = fields.String(allow_none=True)
    reasons = fields.List(fields.String())


class DuplicateProblem(Schema):
    """409 on create: the customers this one looks like."""

    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    candidates = fields.List(fields.Nested(DuplicateCandidate))


class DuplicateResponse(CustomerResponse):
    reasons = fields.List(fields.String(), metadata={"example": ["same phone: +8613800138000"]})


class DuplicateList(Schema):
    items = fields.List(fields.Nested(DuplicateResponse), required=True)


class HistoryEntryResponse(Schema):
    id = fields.Integer()
    action = fields.String(metadata={"description": "created, updated, deleted, restored, assigned, merged, "
                                                    "merged_into, contact_added, followup_logged, imported ..."})
    changes = fields.Dict(keys=fields.String(), metadata={
        "description": "{field: {old, new}}", "example": {"tier": {"old": "C", "new": "A"}}})
    actor_id = fields.String(allow_none=True)
    actor_role = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    occurred_at = fields.DateTime()


class HistoryPage(Schema):
    items = fields.List(fields.Nested(HistoryEntryResponse), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class AssignRequest(Schema):
    owner_id = fields.String(required=True, metadata={"format": "uuid"})


class BulkAssignRequest(Schema):
    customer_ids = fields.List(fields.String(metadata={"format": "uuid"}), required=True,
                               validate=validate.Length(min=1, max=500))
    owner_id = fields.String(required=True, metadata={"format": "uuid"})


class BulkAssignResponse(Schema):
    items = fields.List(fields.Nested(CustomerResponse), required=True)


class MergeRequest(Schema):
    source_id = fields.String(required=True, metadata={"format": "uuid",
                                                       "description": "The customer folded into this one"})
    take_from_source = fields.List(fields.String(validate=validate.OneOf(MERGEABLE_FIELDS)), metadata={
        "description": "Fields whose value comes from the source; the others keep this customer's"})


class CustomFieldRequest(Schema):
    key = fields.String(required=True, metadata={"example": "vat_number"})
    label = fields.String(required=True)
    type = fields.String(required=True, validate=validate.OneOf(CUSTOM_FIELD_TYPES))
    choices = fields.List(fields.String(), metadata={"description": "For type choice"})
    required = fields.Boolean()


class CustomFieldResponse(Schema):
    key = fields.String()
    label = fields.String()
    type = fields.String()
    choices = fields.List(fields.String())
    required = fields.Boolean()
    created_at = fields.DateTime()


class CustomFieldList(Schema):
    items = fields.List(fields.Nested(CustomFieldResponse), required=True)


# --- notifications (served by the notifications service) ----------------------

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
    # The members some problems add (RFC 9457 extensions), documented so a
    # client that validates answers against this document accepts them.
    retry_after = fields.Integer(metadata={"description": "429 from sign-in: seconds until the account may try again"})
    candidates = fields.List(fields.Nested(DuplicateCandidate), metadata={
        "description": "409 on creating a customer: the customers it looks like"})
    current_status = fields.String(metadata={"description": "409 for a wrong state: the record's status now"})
    allowed_actions = fields.List(fields.String(), metadata={
        "description": "409 for a contract in the wrong state: what may be done to it now"})
