"""Documentation and validation schemas of the personal data routes (gateway.personal_data_routes)."""
from marshmallow import Schema, fields, validate

from crm_common.validation import StrictSchema

UUID = {"format": "uuid"}
MAX_REASON_LENGTH = 500  # customers.personal_data checks the same


class PersonalDataExport(Schema):
    customer_id = fields.String(required=True, metadata=UUID)
    generated_at = fields.DateTime(required=True)
    customers = fields.Dict(required=True, metadata={
        "description": "The record (contact details, company, notes, custom fields, tags), contacts, "
                       "follow-ups, the change history, and the customers merged into it"})
    sales = fields.Dict(required=True, metadata={
        "description": "Opportunities with stage changes, quotes, orders with lines and payments, contracts "
                       "with status changes and attachment metadata, the price list assigned"})
    notifications = fields.Dict(required=True, metadata={
        "description": "Tasks about the customer, inbox notifications naming it, webhook deliveries carrying it"})


class EraseRequest(StrictSchema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=MAX_REASON_LENGTH), metadata={
        "description": "Why (e.g. the request's reference); kept in the audit trail"})
    confirm = fields.Boolean(required=True, validate=validate.Equal(True, error="Must be true."), metadata={
        "description": "Must be true: the erasure cannot be undone"})


class EraseResponse(Schema):
    customer_id = fields.String(required=True, metadata=UUID)
    erased_at = fields.DateTime(required=True)
