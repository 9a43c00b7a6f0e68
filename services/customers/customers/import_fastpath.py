"""The common case of an import row, checked and built without marshmallow or the ORM.

Validating a row through ``CustomerCreate`` and building a ``Customer`` to dump
it again costs about 0.4 ms of pure Python, which for 100,000 rows is most of
an import's time. Most rows are plain: text within its length, a known tier,
phones and emails that are valid. ``prepare_fast`` recognises exactly those
rows and builds what ``CustomerBook.prepare`` + ``to_dict`` would build from
them (the same table row, tags, identifiers and snapshot). It never refuses a
row: anything it is not sure of (an unexpected key, a blank cell, a value out
of range, a bad phone or email, a custom field the catalogue refuses...)
returns None, and the caller sends the row through the full path, which
accepts it or rejects it with its usual messages. So every rule is still the
schema's, and tests/test_import_fastpath.py checks that both paths agree.
"""
import uuid

from marshmallow import ValidationError

from crm_common.crypto import blind_index
from crm_common.errors import ValidationFailed
from crm_common.types import utcnow

from customers import search
from customers.domain import WRITER_ROLES
from customers.schemas import (
    COMPANY_SIZES, KINDS, LIFECYCLE_STAGES, MAX_EMAILS, MAX_PHONES, TIERS, CompanyIn, ContactDetailsIn,
    clean_list, normalise_phone,
)

# Top-level text fields: maximum length (None: no limit) and whether the value must be one of a list.
_TEXT_FIELDS = {
    "name": 200, "external_id": 100, "region": 100, "industry": 100, "source": 100, "notes": 10000,
}
_CHOICES = {"kind": KINDS, "tier": TIERS, "lifecycle_stage": LIFECYCLE_STAGES}
_COMPANY_TEXT = {"name": 200, "industry": 100}
_ADDRESS_TEXT = {"country": 100, "region": 100, "city": 100, "street": 300, "postcode": 20}
_KNOWN = set(_TEXT_FIELDS) | set(_CHOICES) | {"company", "contact", "tags", "owner_id", "custom_fields"}
MAX_TAGS, MAX_TAG_LENGTH, MAX_CUSTOM_FIELDS = 50, 50, 100
# The schema's own fields for the values whose rules are more than a length (exact same checks).
_WEBSITE = CompanyIn().fields["website"]
_EMAIL = ContactDetailsIn().fields["emails"].inner
# The order CustomerOut dumps a customer in.
_COMPANY_OUT = ("name", "industry", "size", "website")
_ADDRESS_OUT = ("country", "region", "city", "street", "postcode")


class NotPlain(Exception):
    """The row needs the full path."""


def _text(value, max_length):
    """A trimmed non-blank text of at most ``max_length`` characters (blank becomes None in the schema)."""
    if not isinstance(value, str):
        raise NotPlain
    value = value.strip()
    if not value or len(value) > max_length:
        raise NotPlain
    return value


def _company(company):
    if not isinstance(company, dict):
        raise NotPlain
    loaded = {}
    for key, value in company.items():
        if key in _COMPANY_TEXT:
            loaded[key] = _text(value, _COMPANY_TEXT[key])
        elif key == "size":
            loaded[key] = _text(value, 10)
            if loaded[key] not in COMPANY_SIZES:
                raise NotPlain
        elif key == "website":
            try:
                loaded[key] = _WEBSITE.deserialize(_text(value, 300))
            except ValidationError:
                raise NotPlain
        else:
            raise NotPlain
    return loaded


def _phones(values, region):
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise NotPlain
    values = clean_list(values)
    if len(values) > MAX_PHONES:
        raise NotPlain
    try:
        return list(dict.fromkeys(normalise_phone(value, region) for value in values))
    except ValidationError:
        raise NotPlain


def _emails(values):
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise NotPlain
    values = clean_list(values)
    if len(values) > MAX_EMAILS:
        raise NotPlain
    try:
        return list(dict.fromkeys(_EMAIL.deserialize(value) for value in values))
    except ValidationError:
        raise NotPlain


def _contact(contact, region):
    if not isinstance(contact, dict):
        raise NotPlain
    loaded = {}
    for key, value in contact.items():
        if key == "phones":
            loaded[key] = _phones(value, region)
        elif key == "emails":
            loaded[key] = _emails(value)
        elif key == "address":
            if not isinstance(value, dict) or not set(value) <= set(_ADDRESS_TEXT):
                raise NotPlain
            loaded[key] = {field: _text(text, _ADDRESS_TEXT[field]) for field, text in value.items()}
        else:
            raise NotPlain
    return loaded


def _tags(values):
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise NotPlain
    values = clean_list(values)
    if len(values) > MAX_TAGS or any(len(tag) > MAX_TAG_LENGTH for tag in values):
        raise NotPlain
    return values


def load_plain(data, region):
    """``load(CustomerCreate, data)`` for a plain row; NotPlain for anything else."""
    if not isinstance(data, dict) or not set(data) <= _KNOWN:
        raise NotPlain
    loaded = {}
    for key, value in data.items():
        if key in _TEXT_FIELDS:
            loaded[key] = _text(value, _TEXT_FIELDS[key])
        elif key in _CHOICES:
            loaded[key] = _text(value, 20)
            if loaded[key] not in _CHOICES[key]:
                raise NotPlain
        elif key == "company":
            loaded[key] = _company(value)
        elif key == "contact":
            loaded[key] = _contact(value, region)
        elif key == "tags":
            loaded[key] = _tags(value)
        elif key == "owner_id":
            if not isinstance(value, str):
                raise NotPlain
            try:
                loaded[key] = str(uuid.UUID(value.strip()))
            except ValueError:
                raise NotPlain
        elif key == "custom_fields":
            if not isinstance(value, dict) or len(value) > MAX_CUSTOM_FIELDS \
                    or not all(isinstance(field, str) for field in value):
                raise NotPlain
            loaded[key] = dict(value)
    if "kind" not in loaded or "name" not in loaded:
        raise NotPlain
    contact = loaded.get("contact") or {}
    if loaded["kind"] == "person" and not contact.get("phones") and not contact.get("emails"):
        raise NotPlain
    return loaded


def prepare_fast(context, catalogue, data, owner_team_id, customer_id, region):
    """(values, tags, identifiers, snapshot) as ``prepare_rows`` makes them from ``CustomerBook.prepare``,
    or None when the row must go through the full path."""
    if context.role not in WRITER_ROLES:
        return None
    try:
        loaded = load_plain(data, region)
    except NotPlain:
        return None
    owner_id = loaded.pop("owner_id", None) or context.user_id
    if context.role == "sales" and owner_id != context.user_id:
        return None
    try:
        custom_fields = catalogue.check(loaded.get("custom_fields") or {})
    except ValidationFailed:
        return None
    now = utcnow()
    at = now.isoformat()
    stage = loaded.get("lifecycle_stage", "lead")
    company = loaded.get("company", {})
    contact = loaded.get("contact", {})
    tags = sorted(loaded.get("tags", ()))
    kind, name = loaded["kind"], loaded["name"]
    company_name = company.get("name")
    values = {
        "id": customer_id, "kind": kind, "name": name, "company": company, "contact": contact,
        "owner_id": owner_id, "owner_team_id": owner_team_id if owner_team_id is not None else context.team_id,
        "lifecycle_stage": stage, "lifecycle_changed_at": now, "lifecycle_dates": {stage: at},
        "tier": loaded.get("tier"), "region": loaded.get("region"), "industry": loaded.get("industry"),
        "source": loaded.get("source"), "notes": loaded.get("notes"), "custom_fields": custom_fields,
        "external_id": loaded.get("external_id"),
        "search_text": search.search_text(name, company_name, ()),
        "dedupe_key": search.dedupe_key(name, company_name if kind == "person" else None),
        "next_followup_at": None, "merged_into_id": None, "created_by": context.user_id,
        "created_at": now, "updated_at": now, "deleted_at": None, "erased_at": None, "version": 1,
    }
    # Blind indexes, as CustomerBook._index stores them (customer_identifiers holds no plain value).
    identifiers = [("phone", blind_index("phone", phone)) for phone in contact.get("phones") or ()]
    identifiers += [("email", blind_index("email", email)) for email in contact.get("emails") or ()]
    contact_out = {key: list(contact[key]) for key in ("phones", "emails") if key in contact}
    if "address" in contact:
        contact_out["address"] = {key: contact["address"][key] for key in _ADDRESS_OUT if key in contact["address"]}
    snapshot = {
        "id": customer_id, "kind": kind, "name": name,
        "company": {key: company[key] for key in _COMPANY_OUT if key in company},
        "contact": contact_out,
        "owner_id": values["owner_id"], "owner_team_id": values["owner_team_id"],
        "lifecycle_stage": stage, "lifecycle_changed_at": at, "lifecycle_dates": {stage: at},
        "tier": values["tier"], "tags": tags, "region": values["region"], "industry": values["industry"],
        "source": values["source"], "notes": values["notes"], "custom_fields": dict(custom_fields),
        "external_id": values["external_id"], "next_followup_at": None, "merged_into_id": None,
        "created_at": at, "updated_at": at, "deleted_at": None, "erased_at": None, "version": 1,
    }
    return values, tags, identifiers, snapshot
