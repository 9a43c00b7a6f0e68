"""Documentation schemas of contracts and their attachments (served by the sales service).

They mirror sales.contract_schemas; tests/test_api_contract.py keeps the two equal.
"""
from marshmallow import Schema, fields, validate

from gateway.schemas import PageQuery

CONTRACT_STATUSES = ("draft", "pending_approval", "approved", "signed", "active", "expired", "terminated")
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
MONEY = {"type": "string", "example": "120000.00"}


class ContractWritable(Schema):
    customer_id = fields.String(metadata={"format": "uuid", "description": "A customer that is not deleted"})
    order_id = fields.String(allow_none=True, metadata={"format": "uuid",
                                                        "description": "One of the same customer's orders"})
    title = fields.String(validate=validate.Length(min=1, max=200))
    value = fields.String(metadata={**MONEY, "description": "Decimal as a string, rounded half-up to the "
                                                            "currency's minor unit"})
    currency = fields.String(metadata={"example": "CNY", "description": "ISO 4217"})
    start_date = fields.Date()
    end_date = fields.Date(metadata={"description": "After start_date: the last day in force"})
    renewal_terms = fields.String(allow_none=True, validate=validate.Length(max=10000))


class ContractCreateRequest(ContractWritable):
    customer_id = fields.String(required=True, metadata={"format": "uuid"})
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    value = fields.String(required=True, metadata=MONEY)
    currency = fields.String(required=True, metadata={"example": "CNY"})
    start_date = fields.Date(required=True)
    end_date = fields.Date(required=True, metadata={"description": "After start_date: the last day in force"})
    owner_id = fields.String(metadata={"format": "uuid", "description": "Default: the caller. Sales users own "
                                                                        "what they create"})


class ContractUpdateRequest(ContractWritable):
    """Every field optional, at least one; only while the contract is a draft."""


class ContractResponse(Schema):
    id = fields.String(required=True, metadata={"format": "uuid"})
    customer_id = fields.String(metadata={"format": "uuid"})
    order_id = fields.String(allow_none=True, metadata={"format": "uuid"})
    title = fields.String()
    value = fields.String(metadata=MONEY)
    currency = fields.String()
    start_date = fields.Date()
    end_date = fields.Date()
    renewal_terms = fields.String(allow_none=True)
    status = fields.String(validate=validate.OneOf(CONTRACT_STATUSES))
    owner_id = fields.String(allow_none=True, metadata={"format": "uuid"})
    owner_team_id = fields.String(allow_none=True)
    created_by = fields.String(allow_none=True, metadata={"format": "uuid",
                                                          "description": "The author: may not approve it"})
    approved_by = fields.String(allow_none=True, metadata={"format": "uuid"})
    approved_at = fields.DateTime(allow_none=True)
    rejected_reason = fields.String(allow_none=True, metadata={"description": "Why it was last sent back"})
    signed_at = fields.DateTime(allow_none=True)
    terminated_at = fields.DateTime(allow_none=True)
    termination_reason = fields.String(allow_none=True)
    expired_at = fields.DateTime(allow_none=True)
    last_expiry_notice_days = fields.Integer(allow_none=True, metadata={
        "description": "The last contract.expiring notice sent: 30, 7 or 1 days before end_date"})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    version = fields.Integer(required=True)


class ContractPage(Schema):
    items = fields.List(fields.Nested(ContractResponse), required=True, metadata={"description": "Newest first"})
    next_cursor = fields.String(allow_none=True)


class ContractListQuery(PageQuery):
    status = fields.String(validate=validate.OneOf(CONTRACT_STATUSES))
    customer_id = fields.String(metadata={"format": "uuid"})
    owner_id = fields.String(metadata={"format": "uuid"})
    ending_before = fields.Date(metadata={"description": "end_date on or before this day"})
    ending_after = fields.Date(metadata={"description": "end_date on or after this day"})


CONTRACT_FILTERS = ("status", "customer_id", "owner_id", "ending_before", "ending_after")


class ContractReasonRequest(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class ContractSignRequest(Schema):
    signed_at = fields.DateTime(metadata={"description": "When it was signed (default: now); not in the future"})


class ContractStatusChangeResponse(Schema):
    id = fields.Integer()
    contract_id = fields.String(metadata={"format": "uuid"})
    from_status = fields.String(allow_none=True)
    to_status = fields.String()
    note = fields.String(allow_none=True, metadata={"description": "The reason of a rejection or termination"})
    changed_by = fields.String(allow_none=True, metadata={"format": "uuid",
                                                          "description": "null: the daily check"})
    changed_at = fields.DateTime()


class ContractHistoryPage(Schema):
    items = fields.List(fields.Nested(ContractStatusChangeResponse), required=True,
                        metadata={"description": "Newest first"})
    next_cursor = fields.String(allow_none=True)


class AttachmentUploadForm(Schema):
    file = fields.Raw(required=True, metadata={
        "type": "string", "format": "binary",
        "description": f"The file, at most {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB; its name and media type "
                       "are taken from the upload"})


class AttachmentResponse(Schema):
    id = fields.String(metadata={"format": "uuid"})
    contract_id = fields.String(metadata={"format": "uuid"})
    file_name = fields.String()
    content_type = fields.String()
    size = fields.Integer(metadata={"description": "Bytes"})
    checksum = fields.String(metadata={"description": "SHA-256 of the bytes, hex; checked on every download"})
    uploaded_by = fields.String(allow_none=True, metadata={"format": "uuid"})
    uploaded_at = fields.DateTime()


class AttachmentList(Schema):
    items = fields.List(fields.Nested(AttachmentResponse), required=True)


class ExpiringNotice(Schema):
    id = fields.String(metadata={"format": "uuid"})
    days_left = fields.Integer(metadata={"description": "The notice sent: 30, 7 or 1"})
    end_date = fields.Date()


class ExpiryCheckResponse(Schema):
    today = fields.Date()
    activated = fields.List(fields.String(), metadata={"description": "Signed contracts whose start date came"})
    expired = fields.List(fields.String(), metadata={"description": "Contracts past their end date"})
    expiring = fields.List(fields.Nested(ExpiringNotice), metadata={
        "description": "contract.expiring notices published by this run (each threshold once per contract)"})
