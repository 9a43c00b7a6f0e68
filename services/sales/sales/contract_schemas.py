"""Validation and output shapes of contracts, their history and their attachments."""
from datetime import timedelta, timezone

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from crm_common.validation import PatchSchema
from crm_common.types import utcnow

from sales.catalogue_schemas import Strict
from sales.money import Amount, Currency

STATUSES = ("draft", "pending_approval", "approved", "signed", "active", "expired", "terminated")
# The largest attachment: a scanned contract of a few hundred pages.
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
# Clocks of phones and laptops drift: a signature "now" may arrive a little
# ahead of ours, but one dated next week has not happened yet.
MAX_CLOCK_SKEW = timedelta(minutes=5)
END_NOT_AFTER_START = "Must be after start_date."
FILE_SIZE = f"The file must have 1 to {MAX_ATTACHMENT_BYTES} bytes (20 MB)."


class Id(fields.UUID):
    """A UUID in, kept as its canonical string (ids are strings in our tables and on the wire)."""

    def _deserialize(self, value, attr, data, **kwargs):
        return str(super()._deserialize(value, attr, data, **kwargs))


def _utc_datetime(**kwargs):
    # A timestamp without an offset is read as UTC, as everywhere on our wire.
    return fields.AwareDateTime(default_timezone=timezone.utc, **kwargs)


class ContractFields(Strict):
    customer_id = Id()
    order_id = Id(allow_none=True)
    title = fields.String(validate=validate.Length(min=1, max=200))
    value = Amount()
    currency = Currency()
    start_date = fields.Date()
    end_date = fields.Date()
    renewal_terms = fields.String(allow_none=True, validate=validate.Length(max=10000))

    @validates_schema
    def _ends_after_it_starts(self, data, **kwargs):
        if "start_date" in data and "end_date" in data and data["end_date"] <= data["start_date"]:
            raise ValidationError({"end_date": [END_NOT_AFTER_START]})


class ContractCreate(ContractFields):
    customer_id = Id(required=True)
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    value = Amount(required=True)
    currency = Currency(required=True)
    start_date = fields.Date(required=True)
    end_date = fields.Date(required=True)
    owner_id = Id()


class ContractUpdate(ContractFields, PatchSchema):
    """Every field optional, at least one; the owner changes by assignment, not here."""


class ContractFilters(Strict):
    status = fields.String(validate=validate.OneOf(STATUSES))
    customer_id = Id()
    owner_id = Id()
    ending_before = fields.Date(metadata={"description": "end_date on or before this day"})
    ending_after = fields.Date(metadata={"description": "end_date on or after this day"})


class ReasonRequest(Strict):
    """The body of /reject and /terminate."""

    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class SignRequest(Strict):
    signed_at = _utc_datetime(load_default=None)

    @validates_schema
    def _not_in_the_future(self, data, **kwargs):
        signed_at = data.get("signed_at")
        if signed_at is not None and signed_at > utcnow() + MAX_CLOCK_SKEW:
            raise ValidationError({"signed_at": ["Must not be in the future."]})


class AttachmentUpload(Strict):
    """What comes with the bytes of an upload."""

    file_name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    content_type = fields.String(load_default="application/octet-stream", validate=validate.Regexp(
        r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}$",
        error="Not a media type like application/pdf."))


class ContractOut(Schema):
    id = fields.String()
    customer_id = fields.String()
    order_id = fields.String(allow_none=True)
    title = fields.String()
    value = Amount()
    currency = fields.String()
    start_date = fields.Date()
    end_date = fields.Date()
    renewal_terms = fields.String(allow_none=True)
    status = fields.String()
    owner_id = fields.String(allow_none=True)
    owner_team_id = fields.String(allow_none=True)
    created_by = fields.String(allow_none=True)
    approved_by = fields.String(allow_none=True)
    approved_at = fields.DateTime(allow_none=True)
    rejected_reason = fields.String(allow_none=True)
    signed_at = fields.DateTime(allow_none=True)
    terminated_at = fields.DateTime(allow_none=True)
    termination_reason = fields.String(allow_none=True)
    expired_at = fields.DateTime(allow_none=True)
    last_expiry_notice_days = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    version = fields.Integer()


class StatusChangeOut(Schema):
    id = fields.Integer()
    contract_id = fields.String()
    from_status = fields.String(allow_none=True)
    to_status = fields.String()
    note = fields.String(allow_none=True)
    changed_by = fields.String(allow_none=True)
    changed_at = fields.DateTime()


class AttachmentOut(Schema):
    id = fields.String()
    contract_id = fields.String()
    file_name = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    checksum = fields.String()
    uploaded_by = fields.String(allow_none=True)
    uploaded_at = fields.DateTime()


class ExpiryCheckOut(Schema):
    """What one run of the expiry check did."""

    today = fields.Date()
    activated = fields.List(fields.String())
    expired = fields.List(fields.String())
    expiring = fields.List(fields.Dict(keys=fields.String()))
