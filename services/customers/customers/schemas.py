"""Validation of what comes in, and the shape of what goes out."""
import re

from marshmallow import (
    EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, pre_load, validate, validates_schema,
)

KINDS = ("person", "company")
LIFECYCLE_STAGES = ("lead", "prospect", "customer", "churned")
TIERS = ("A", "B", "C", "D")
SORTABLE = ("created_at", "updated_at", "name")

PHONE_SEPARATORS = re.compile(r"[\s\-().]")
PHONE_PATTERN = re.compile(r"^\+?[0-9]{6,15}$")


def normalise_phone(value):
    """Strip separators; keep a leading +. Full E.164 with default regions comes with the customers issue."""
    phone = PHONE_SEPARATORS.sub("", value)
    if not PHONE_PATTERN.match(phone):
        raise ValidationError("Not a valid phone number: use digits, optionally starting with +.")
    return phone


def _clean_tags(tags):
    seen = []
    for tag in tags:
        tag = tag.strip()
        if tag and tag not in seen:
            seen.append(tag)
    return seen


class CustomerFields(Schema):
    """Fields a caller may set. Anything else (id, version, timestamps) is refused."""

    class Meta:
        unknown = RAISE

    kind = fields.String(validate=validate.OneOf(KINDS))
    name = fields.String(validate=validate.Length(min=1, max=200))
    email = fields.Email(allow_none=True, validate=validate.Length(max=254))
    phone = fields.String(allow_none=True)
    owner_id = fields.UUID(allow_none=True)
    lifecycle_stage = fields.String(validate=validate.OneOf(LIFECYCLE_STAGES))
    tier = fields.String(allow_none=True, validate=validate.OneOf(TIERS))
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=50)),
                       validate=validate.Length(max=50))
    region = fields.String(allow_none=True, validate=validate.Length(max=100))
    industry = fields.String(allow_none=True, validate=validate.Length(max=100))
    source = fields.String(allow_none=True, validate=validate.Length(max=100))
    notes = fields.String(allow_none=True, validate=validate.Length(max=10000))

    @pre_load
    def _trim(self, data, **kwargs):
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in ("name", "email", "phone", "region", "industry", "source"):
            if isinstance(data.get(key), str):
                data[key] = data[key].strip() or None
        tags = data.get("tags")
        if isinstance(tags, list) and all(isinstance(tag, str) for tag in tags):
            data["tags"] = _clean_tags(tags)
        return data

    @post_load
    def _normalise(self, data, **kwargs):
        if data.get("phone"):
            try:
                data["phone"] = normalise_phone(data["phone"])
            except ValidationError as error:
                raise ValidationError({"phone": error.messages})
        if data.get("email"):
            data["email"] = data["email"].lower()
        if data.get("owner_id") is not None:
            data["owner_id"] = str(data["owner_id"])
        return data


class CustomerCreate(CustomerFields):
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))

    @validates_schema
    def _name_present(self, data, **kwargs):
        if "name" in data and not (data["name"] or "").strip():
            raise ValidationError({"name": ["Must not be blank."]})


class CustomerUpdate(CustomerFields):
    """PATCH: every field optional. The owner changes through assignment, not here."""

    @pre_load
    def _refuse_owner(self, data, **kwargs):
        if isinstance(data, dict) and "owner_id" in data:
            raise ValidationError({"owner_id": ["Change the owner with POST /customers/{id}/assign."]})
        return data

    @validates_schema
    def _not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError({"_schema": ["Give at least one field to change."]})


class CustomerFilters(Schema):
    class Meta:
        unknown = RAISE

    q = fields.String(validate=validate.Length(min=1, max=100))
    owner_id = fields.UUID()
    lifecycle_stage = fields.String(validate=validate.OneOf(LIFECYCLE_STAGES))
    tier = fields.String(validate=validate.OneOf(TIERS))
    tag = fields.String(validate=validate.Length(min=1, max=50))
    region = fields.String(validate=validate.Length(max=100))
    include_deleted = fields.Boolean(load_default=False)


class CustomerOut(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.String()
    kind = fields.String()
    name = fields.String()
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    owner_id = fields.String(allow_none=True)
    owner_team_id = fields.String(allow_none=True)
    lifecycle_stage = fields.String()
    lifecycle_changed_at = fields.DateTime()
    tier = fields.String(allow_none=True)
    tags = fields.List(fields.String())
    region = fields.String(allow_none=True)
    industry = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    deleted_at = fields.DateTime(allow_none=True)
    version = fields.Integer()
