"""Validation of what comes in, and the shape of what goes out."""
from datetime import timezone
from functools import lru_cache

import phonenumbers
from marshmallow import (
    EXCLUDE, Schema, ValidationError, fields, post_load, pre_load, validate, validates_schema,
)

from crm_common.config import env
from crm_common.validation import PatchSchema, StrictSchema as Strict

KINDS = ("person", "company")
LIFECYCLE_STAGES = ("lead", "prospect", "customer", "churned")
TIERS = ("A", "B", "C", "D")
SORTABLE = ("created_at", "updated_at", "name", "tier")
COMPANY_SIZES = ("1-9", "10-49", "50-249", "250-999", "1000+")
MAX_PHONES = MAX_EMAILS = 10


def default_phone_region():
    """Where a phone number written without +country code is assumed to be (ISO 3166 code)."""
    return env("CRM_DEFAULT_PHONE_REGION", "CN").upper()


def normalise_phone(value, region=None):
    """The number in E.164 (+8613800138000), or ValidationError saying what is wrong."""
    number, error = _normalised_phone(value, region or default_phone_region())
    if error is not None:
        raise ValidationError(error)
    return number


@lru_cache(maxsize=100_000)
def _normalised_phone(value, region):
    """(E.164, None) or (None, message), remembered by raw value and region: phonenumbers takes
    tens of microseconds per number, and imports repeat numbers (company switchboards...)."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None, f"{value!r} is not a phone number."
    if not phonenumbers.is_valid_number(number):
        return None, f"{value!r} is not a valid phone number; write it with its country code, e.g. +86 138 0013 8000."
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def clean_list(values):
    """Trimmed, de-duplicated (first spelling wins), empty entries dropped."""
    seen, kept = set(), []
    for value in values:
        value = value.strip()
        if value and value.casefold() not in seen:
            seen.add(value.casefold())
            kept.append(value)
    return kept


class Phone(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        return normalise_phone(super()._deserialize(value, attr, data, **kwargs))


class LowerEmail(fields.Email):
    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).lower()




class CompanyIn(Strict):
    name = fields.String(allow_none=True, validate=validate.Length(max=200))
    industry = fields.String(allow_none=True, validate=validate.Length(max=100))
    size = fields.String(allow_none=True, validate=validate.OneOf(COMPANY_SIZES))
    website = fields.Url(allow_none=True, validate=validate.Length(max=300))


class AddressIn(Strict):
    country = fields.String(allow_none=True, validate=validate.Length(max=100))
    region = fields.String(allow_none=True, validate=validate.Length(max=100))
    city = fields.String(allow_none=True, validate=validate.Length(max=100))
    street = fields.String(allow_none=True, validate=validate.Length(max=300))
    postcode = fields.String(allow_none=True, validate=validate.Length(max=20))


class ContactDetailsIn(Strict):
    phones = fields.List(Phone(), validate=validate.Length(max=MAX_PHONES))
    emails = fields.List(LowerEmail(validate=validate.Length(max=254)), validate=validate.Length(max=MAX_EMAILS))
    address = fields.Nested(AddressIn)
    id_number = fields.String(allow_none=True, validate=validate.Length(max=50), metadata={
        "description": "National ID, passport or company registration number; stored encrypted"})

    @pre_load
    def _clean_lists(self, data, **kwargs):
        if isinstance(data, dict):
            data = dict(data)
            for key in ("phones", "emails"):
                if isinstance(data.get(key), list) and all(isinstance(v, str) for v in data[key]):
                    data[key] = clean_list(data[key])
        return data

    @post_load
    def _unique_after_normalising(self, data, **kwargs):
        # "+86 138..." and "138..." are one number once normalised.
        for key in ("phones", "emails"):
            if key in data:
                data[key] = list(dict.fromkeys(data[key]))
        return data


class CustomerFields(Strict):
    """Fields a caller may set. Anything else (id, version, timestamps) is refused."""

    kind = fields.String(validate=validate.OneOf(KINDS))
    name = fields.String(validate=validate.Length(min=1, max=200))
    company = fields.Nested(CompanyIn)
    contact = fields.Nested(ContactDetailsIn)
    owner_id = fields.UUID(allow_none=True)
    lifecycle_stage = fields.String(validate=validate.OneOf(LIFECYCLE_STAGES))
    tier = fields.String(allow_none=True, validate=validate.OneOf(TIERS))
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=50)), validate=validate.Length(max=50))
    region = fields.String(allow_none=True, validate=validate.Length(max=100))
    industry = fields.String(allow_none=True, validate=validate.Length(max=100))
    source = fields.String(allow_none=True, validate=validate.Length(max=100))
    notes = fields.String(allow_none=True, validate=validate.Length(max=10000))
    # Checked against the admin-defined field definitions by the domain.
    custom_fields = fields.Dict(keys=fields.String(), validate=validate.Length(max=100))
    external_id = fields.String(allow_none=True, validate=validate.Length(min=1, max=100))

    @pre_load
    def _clean_tags(self, data, **kwargs):
        if isinstance(data, dict) and isinstance(data.get("tags"), list) \
                and all(isinstance(tag, str) for tag in data["tags"]):
            data = {**data, "tags": clean_list(data["tags"])}
        return data

    @post_load
    def _plain_values(self, data, **kwargs):
        if data.get("owner_id") is not None:
            data["owner_id"] = str(data["owner_id"])
        return data


class CustomerCreate(CustomerFields):
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))

    @validates_schema
    def _required_by_kind(self, data, **kwargs):
        # A person needs a way to reach them; a company is findable by name alone.
        if data.get("kind") == "person":
            contact = data.get("contact") or {}
            if not contact.get("phones") and not contact.get("emails"):
                raise ValidationError(
                    {"contact": ["A person needs at least one phone number or email address."]})


class CustomerUpdate(CustomerFields, PatchSchema):
    """PATCH: every field optional. The owner changes through assignment, not here."""

    @pre_load
    def _refuse_owner(self, data, **kwargs):
        if isinstance(data, dict) and "owner_id" in data:
            raise ValidationError({"owner_id": ["Change the owner with POST /customers/{id}/assign."]})
        return data


class AssignRequest(Strict):
    owner_id = fields.UUID(required=True)

    @post_load
    def _plain(self, data, **kwargs):
        return {"owner_id": str(data["owner_id"])}


class BulkAssignRequest(Strict):
    customer_ids = fields.List(fields.UUID(), required=True, validate=validate.Length(min=1, max=500))
    owner_id = fields.UUID(required=True)

    @post_load
    def _plain(self, data, **kwargs):
        return {"customer_ids": list(dict.fromkeys(str(i) for i in data["customer_ids"])),
                "owner_id": str(data["owner_id"])}


MERGEABLE_FIELDS = ("kind", "name", "company", "contact", "lifecycle_stage", "tier", "region", "industry",
                    "source", "notes", "custom_fields")


class MergeRequest(Strict):
    source_id = fields.UUID(required=True)
    # Fields whose value comes from the source; every other field keeps the target's.
    take_from_source = fields.List(fields.String(validate=validate.OneOf(MERGEABLE_FIELDS)), load_default=list)

    @post_load
    def _plain(self, data, **kwargs):
        return {**data, "source_id": str(data["source_id"])}


class CustomerFilters(Strict):
    q = fields.String(validate=validate.Length(min=1, max=100))
    kind = fields.String(validate=validate.OneOf(KINDS))
    owner_id = fields.UUID()
    lifecycle_stage = fields.String(validate=validate.OneOf(LIFECYCLE_STAGES))
    tier = fields.String(validate=validate.OneOf(TIERS))
    # Repeatable: customers carrying every tag given.
    tag = fields.List(fields.String(validate=validate.Length(min=1, max=50)), validate=validate.Length(max=10))
    industry = fields.String(validate=validate.Length(max=100))
    region = fields.String(validate=validate.Length(max=100))
    source = fields.String(validate=validate.Length(max=100))
    created_from = fields.AwareDateTime(default_timezone=timezone.utc)
    created_to = fields.AwareDateTime(default_timezone=timezone.utc)
    has_followup_due = fields.Boolean()
    phone = fields.String(validate=validate.Length(min=1, max=40))
    email = fields.String(validate=validate.Length(min=1, max=254))
    include_deleted = fields.Boolean(load_default=False)

    @pre_load
    def _single_tag_is_a_list(self, data, **kwargs):
        if isinstance(data, dict) and isinstance(data.get("tag"), str):
            data = {**data, "tag": [data["tag"]]}
        return data

    @post_load
    def _normalise(self, data, **kwargs):
        if "phone" in data:
            try:
                data["phone"] = normalise_phone(data["phone"])
            except ValidationError as error:
                raise ValidationError({"phone": error.messages})
        if "email" in data:
            data["email"] = data["email"].strip().lower()
        if "owner_id" in data:
            data["owner_id"] = str(data["owner_id"])
        if "created_from" in data and "created_to" in data and data["created_from"] > data["created_to"]:
            raise ValidationError({"created_to": ["Must not be before created_from."]})
        return data


CUSTOM_FIELD_TYPES = ("text", "number", "boolean", "date", "choice")


class CustomFieldDefinitionIn(Strict):
    key = fields.String(required=True, validate=validate.Regexp(
        r"^[a-z][a-z0-9_]{0,49}$", error="Use 1-50 lower-case letters, digits or _, starting with a letter."))
    label = fields.String(required=True, validate=validate.Length(min=1, max=100))
    type = fields.String(required=True, validate=validate.OneOf(CUSTOM_FIELD_TYPES))
    choices = fields.List(fields.String(validate=validate.Length(min=1, max=100)), load_default=list,
                          validate=validate.Length(max=100))
    required = fields.Boolean(load_default=False)

    @validates_schema
    def _choices_for_choice(self, data, **kwargs):
        if data.get("type") == "choice" and not data.get("choices"):
            raise ValidationError({"choices": ["A choice field needs at least one choice."]})
        if data.get("type") != "choice" and data.get("choices"):
            raise ValidationError({"choices": ["Only choice fields have choices."]})


class CustomFieldDefinitionOut(Schema):
    key = fields.String()
    label = fields.String()
    type = fields.String()
    choices = fields.List(fields.String())
    required = fields.Boolean()
    created_at = fields.DateTime()


class CompanyOut(Schema):
    name = fields.String(allow_none=True)
    industry = fields.String(allow_none=True)
    size = fields.String(allow_none=True)
    website = fields.String(allow_none=True)


class AddressOut(Schema):
    country = fields.String(allow_none=True)
    region = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    street = fields.String(allow_none=True)
    postcode = fields.String(allow_none=True)


class ContactDetailsOut(Schema):
    phones = fields.List(fields.String())
    emails = fields.List(fields.String())
    address = fields.Nested(AddressOut)
    id_number = fields.String(allow_none=True)


class CustomerOut(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.String()
    kind = fields.String()
    name = fields.String()
    company = fields.Nested(CompanyOut)
    contact = fields.Nested(ContactDetailsOut)
    owner_id = fields.String(allow_none=True)
    owner_team_id = fields.String(allow_none=True)
    lifecycle_stage = fields.String()
    lifecycle_changed_at = fields.DateTime()
    lifecycle_dates = fields.Dict(keys=fields.String(), values=fields.String())
    tier = fields.String(allow_none=True)
    tags = fields.List(fields.String())
    region = fields.String(allow_none=True)
    industry = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    custom_fields = fields.Dict(keys=fields.String())
    external_id = fields.String(allow_none=True)
    next_followup_at = fields.DateTime(allow_none=True)
    merged_into_id = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    deleted_at = fields.DateTime(allow_none=True)
    erased_at = fields.DateTime(allow_none=True)
    version = fields.Integer()


class HistoryEntryOut(Schema):
    id = fields.Integer()
    action = fields.String()
    changes = fields.Dict(keys=fields.String())
    actor_id = fields.String(allow_none=True)
    actor_role = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    occurred_at = fields.DateTime()
