"""Validation and output shapes of quotes, orders and payments."""
from datetime import timezone
from decimal import Decimal

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from crm_common.types import utcnow
from crm_common.validation import PatchSchema

from sales.catalogue_schemas import MoneyOut, Percent, Quantity, Strict
from sales.money import Amount, Currency

MAX_LINES = 200
QUOTE_STATUSES = ("draft", "sent", "accepted", "rejected", "expired")
ORDER_STATUSES = ("draft", "confirmed", "paid", "fulfilled", "cancelled")
PAYMENT_STATUSES = ("unpaid", "partial", "paid")
PAYMENT_METHODS = ("bank_transfer", "card", "cash", "cheque", "other")


# --- lines -------------------------------------------------------------------

class LineIn(Strict):
    """One line. With a product: description, unit price and tax rate default from the catalogue
    (the unit price from the customer's price list when it has one). Without: say what it is and its price."""

    product_id = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=36))
    description = fields.String(validate=validate.Length(min=1, max=500))
    quantity = Quantity(required=True)
    unit_price = Amount()
    discount_percent = Percent(load_default=Decimal(0))
    tax_rate = Percent()

    @validates_schema
    def _priced(self, data, **kwargs):
        if data.get("product_id") is None:
            errors = {field: ["Required for a line without a product."]
                      for field in ("description", "unit_price") if data.get(field) is None}
            if errors:
                raise ValidationError(errors)


def Lines(**kwargs):
    return fields.List(fields.Nested(LineIn), validate=validate.Length(
        min=1, max=MAX_LINES, error=f"Give 1 to {MAX_LINES} lines."), **kwargs)


class LineOut(Schema):
    position = fields.Integer()
    product_id = fields.String(allow_none=True)
    sku = fields.String(allow_none=True)
    description = fields.String()
    quantity = Quantity()
    unit_price = MoneyOut()
    discount_percent = Percent()
    tax_rate = Percent()
    subtotal = MoneyOut()
    discount = MoneyOut()
    tax = MoneyOut()
    total = MoneyOut()


class TotalsOut(Schema):
    """What every priced document shows."""

    id = fields.String()
    customer_id = fields.String()
    opportunity_id = fields.String(allow_none=True)
    owner_id = fields.String(allow_none=True)
    owner_team_id = fields.String(allow_none=True)
    currency = fields.String()
    subtotal = MoneyOut()
    discount_total = MoneyOut()
    tax_total = MoneyOut()
    total = MoneyOut()
    notes = fields.String(allow_none=True)
    lines = fields.List(fields.Nested(LineOut))
    created_by = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    version = fields.Integer()


class PageFilters(Strict):
    customer_id = fields.String(validate=validate.Length(min=1, max=36))
    owner_id = fields.String(validate=validate.Length(min=1, max=36))


# --- quotes ------------------------------------------------------------------

class DocumentCreate(Strict):
    """What a new quote or order says."""

    customer_id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    opportunity_id = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=36))
    owner_id = fields.UUID(allow_none=True, load_default=None)
    currency = Currency(metadata={"description": "Default: the currency of the first line's product"})
    lines = Lines(required=True)
    notes = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=10000))


class QuoteCreate(DocumentCreate):
    valid_until = fields.Date(allow_none=True, load_default=None)


class QuoteUpdate(PatchSchema):
    """Only a draft changes; lines, when given, replace all lines."""

    lines = Lines()
    valid_until = fields.Date(allow_none=True)
    notes = fields.String(allow_none=True, validate=validate.Length(max=10000))


class ReasonIn(Strict):
    """Why a quote was rejected or an order cancelled."""

    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class QuoteFilters(PageFilters):
    status = fields.String(validate=validate.OneOf(QUOTE_STATUSES))
    opportunity_id = fields.String(validate=validate.Length(min=1, max=36))


class QuoteOut(TotalsOut):
    status = fields.String(metadata={"description": "A sent quote past valid_until shows as expired"})
    valid_until = fields.Date(allow_none=True)
    rejected_reason = fields.String(allow_none=True)
    sent_at = fields.DateTime(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)
    order_id = fields.String(allow_none=True)


# --- orders and payments -----------------------------------------------------

class OrderCreate(DocumentCreate):
    """A draft order entered directly."""


class OrderFilters(PageFilters):
    status = fields.String(validate=validate.OneOf(ORDER_STATUSES))


class PaymentCreate(Strict):
    amount = Amount(required=True, validate=validate.Range(min=0, min_inclusive=False, error="Must be more than 0."))
    paid_at = fields.AwareDateTime(default_timezone=timezone.utc, load_default=utcnow)
    method = fields.String(required=True, validate=validate.OneOf(PAYMENT_METHODS))
    reference = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=100))


class OrderOut(TotalsOut):
    quote_id = fields.String(allow_none=True)
    status = fields.String()
    paid_amount = MoneyOut()
    outstanding = MoneyOut()
    payment_status = fields.String()
    cancel_reason = fields.String(allow_none=True)
    confirmed_at = fields.DateTime(allow_none=True)
    paid_at = fields.DateTime(allow_none=True)
    fulfilled_at = fields.DateTime(allow_none=True)
    cancelled_at = fields.DateTime(allow_none=True)


class PaymentOut(Schema):
    id = fields.String()
    order_id = fields.String()
    amount = MoneyOut()
    paid_at = fields.DateTime()
    method = fields.String()
    reference = fields.String(allow_none=True)
    created_by = fields.String(allow_none=True)
    created_at = fields.DateTime()
