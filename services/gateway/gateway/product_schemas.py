"""Documentation schemas of products, price lists, quotes, orders and payments (the sales service).

The sales service validates and shapes these payloads; the gateway passes them
through, so the schemas here document the contract (tests/test_api_contract.py
keeps them equal to sales.catalogue_schemas and sales.order_schemas).
Amounts are strings with two decimals ("1234.50"), never JSON numbers that a
client could read as binary floating point.
"""
from marshmallow import Schema, fields, validate

from gateway.schemas import PageQuery

QUOTE_STATUSES = ("draft", "sent", "accepted", "rejected", "expired")
ORDER_STATUSES = ("draft", "confirmed", "paid", "fulfilled", "cancelled")
PAYMENT_STATUSES = ("unpaid", "partial", "paid")
PAYMENT_METHODS = ("bank_transfer", "card", "cash", "cheque", "other")
MAX_LINES = 200


def Money(**kwargs):
    metadata = {"example": "1234.50", "description": "A decimal amount as a string", **kwargs.pop("metadata", {})}
    return fields.String(metadata=metadata, **kwargs)


def Percent(**kwargs):
    metadata = {"example": "13", "description": "Percent, 0 to 100, up to two decimals",
                **kwargs.pop("metadata", {})}
    return fields.String(metadata=metadata, **kwargs)


def Currency(**kwargs):
    metadata = {"example": "CNY", "description": "ISO 4217 code", **kwargs.pop("metadata", {})}
    return fields.String(metadata=metadata, **kwargs)


def Id(**kwargs):
    return fields.String(metadata={"format": "uuid", **kwargs.pop("metadata", {})}, **kwargs)


# --- products ----------------------------------------------------------------

class ProductWritable(Schema):
    sku = fields.String(metadata={"description": "Unique (409 when taken); letters, digits, . _ / -"})
    name = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(allow_none=True)
    unit = fields.String(metadata={"example": "piece"})
    list_price = Money()
    currency = Currency()
    tax_rate = Percent()
    active = fields.Boolean(metadata={"description": "Products are deactivated, never deleted"})


class ProductCreateRequest(ProductWritable):
    sku = fields.String(required=True, metadata={"description": "Unique (409 when taken)"})
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    list_price = Money(required=True)
    currency = Currency(required=True)


class ProductUpdateRequest(ProductWritable):
    """Every field optional; at least one."""


class ProductResponse(ProductWritable):
    id = Id(required=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    version = fields.Integer(required=True)


class ProductPage(Schema):
    items = fields.List(fields.Nested(ProductResponse), required=True, metadata={"description": "By SKU"})
    next_cursor = fields.String(allow_none=True, required=True)


class ProductListQuery(PageQuery):
    q = fields.String(metadata={"description": "Words found in the SKU or name"})
    active = fields.Boolean()


PRODUCT_FILTERS = ("q", "active")


# --- price lists -------------------------------------------------------------

class PriceListItemDoc(Schema):
    product_id = Id(required=True)
    unit_price = Money(required=True, metadata={"description": "In the list's currency"})
    valid_from = fields.Date(required=True)
    valid_to = fields.Date(allow_none=True, metadata={"description": "Inclusive; none: open-ended"})


class PriceListItemResponse(PriceListItemDoc):
    id = Id()


class PriceListWritable(Schema):
    name = fields.String(validate=validate.Length(min=1, max=100))
    currency = Currency()
    active = fields.Boolean()
    items = fields.List(fields.Nested(PriceListItemDoc), metadata={
        "description": "Replaces all items; one product's periods may not overlap"})
    customer_ids = fields.List(Id(), metadata={
        "description": "Replaces the customers; a customer is in at most one list (409 otherwise)"})


class PriceListCreateRequest(PriceListWritable):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    currency = Currency(required=True)


class PriceListUpdateRequest(PriceListWritable):
    """Every field optional; at least one."""


class PriceListResponse(Schema):
    id = Id(required=True)
    name = fields.String(required=True)
    currency = Currency(required=True)
    active = fields.Boolean()
    items = fields.List(fields.Nested(PriceListItemResponse))
    customer_ids = fields.List(Id())
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    version = fields.Integer(required=True)


class PriceListPage(Schema):
    items = fields.List(fields.Nested(PriceListResponse), required=True, metadata={"description": "By name"})
    next_cursor = fields.String(allow_none=True, required=True)


# --- lines, quotes, orders ---------------------------------------------------

class LineRequest(Schema):
    product_id = Id(allow_none=True, metadata={
        "description": "Without a product, give description and unit_price"})
    description = fields.String(metadata={"description": "Default: the product's name"})
    quantity = fields.String(required=True, metadata={"example": "1.5", "description": "More than 0, up to 3 decimals"})
    unit_price = Money(metadata={
        "description": "Default: the customer's price list price valid today in the document's currency, "
                       "else the product's list price when the product is in that currency (422 naming the "
                       "line otherwise)"})
    discount_percent = Percent()
    tax_rate = Percent(metadata={"description": "Default: the product's tax rate"})


class LineResponse(Schema):
    position = fields.Integer()
    product_id = Id(allow_none=True)
    sku = fields.String(allow_none=True)
    description = fields.String()
    quantity = fields.String()
    unit_price = Money()
    discount_percent = Percent()
    tax_rate = Percent()
    subtotal = Money(metadata={"description": "quantity x unit_price, rounded half-up to the currency's minor unit"})
    discount = Money(metadata={"description": "subtotal x discount_percent, rounded"})
    tax = Money(metadata={"description": "(subtotal - discount) x tax_rate, rounded"})
    total = Money(metadata={"description": "subtotal - discount + tax"})


def Lines(**kwargs):
    return fields.List(fields.Nested(LineRequest), validate=validate.Length(min=1, max=MAX_LINES), **kwargs)


class DocumentResponse(Schema):
    id = Id(required=True)
    customer_id = Id(required=True)
    opportunity_id = Id(allow_none=True)
    owner_id = Id(allow_none=True)
    owner_team_id = fields.String(allow_none=True)
    currency = Currency()
    subtotal = Money(metadata={"description": "Totals are the sums of the rounded lines"})
    discount_total = Money()
    tax_total = Money()
    total = Money()
    notes = fields.String(allow_none=True)
    lines = fields.List(fields.Nested(LineResponse))
    created_by = Id(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    version = fields.Integer(required=True)


class DocumentCreateRequest(Schema):
    customer_id = Id(required=True, metadata={"description": "An active customer (422 otherwise)"})
    opportunity_id = Id(allow_none=True, metadata={"description": "Of the same customer"})
    owner_id = Id(allow_none=True, metadata={"description": "Default: the caller; sales users own what they create"})
    currency = Currency(metadata={"description": "Default: the currency of the first line's product"})
    lines = Lines(required=True)
    notes = fields.String(allow_none=True)


class QuoteCreateRequest(DocumentCreateRequest):
    valid_until = fields.Date(allow_none=True, metadata={"description": "A sent quote past this date is expired"})


class QuoteUpdateRequest(Schema):
    """Only a draft changes (409 otherwise); lines replace all lines."""

    lines = Lines()
    valid_until = fields.Date(allow_none=True)
    notes = fields.String(allow_none=True)


class ReasonRequest(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class QuoteResponse(DocumentResponse):
    status = fields.String(validate=validate.OneOf(QUOTE_STATUSES))
    valid_until = fields.Date(allow_none=True)
    rejected_reason = fields.String(allow_none=True)
    sent_at = fields.DateTime(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)
    order_id = Id(allow_none=True, metadata={"description": "The order of an accepted quote"})


class QuotePage(Schema):
    items = fields.List(fields.Nested(QuoteResponse), required=True, metadata={"description": "Newest first"})
    next_cursor = fields.String(allow_none=True, required=True)


class QuoteListQuery(PageQuery):
    status = fields.String(validate=validate.OneOf(QUOTE_STATUSES), metadata={
        "description": "expired includes sent quotes past valid_until"})
    customer_id = Id()
    owner_id = Id()
    opportunity_id = Id()


QUOTE_FILTERS = ("status", "customer_id", "owner_id", "opportunity_id")


class OrderCreateRequest(DocumentCreateRequest):
    """A draft order entered directly (not from a quote)."""


class OrderResponse(DocumentResponse):
    quote_id = Id(allow_none=True, metadata={"description": "The quote it was accepted from (one order per quote)"})
    status = fields.String(validate=validate.OneOf(ORDER_STATUSES))
    paid_amount = Money()
    outstanding = Money()
    payment_status = fields.String(validate=validate.OneOf(PAYMENT_STATUSES))
    cancel_reason = fields.String(allow_none=True)
    confirmed_at = fields.DateTime(allow_none=True)
    paid_at = fields.DateTime(allow_none=True, metadata={"description": "When it was paid in full"})
    fulfilled_at = fields.DateTime(allow_none=True)
    cancelled_at = fields.DateTime(allow_none=True)


class OrderPage(Schema):
    items = fields.List(fields.Nested(OrderResponse), required=True, metadata={"description": "Newest first"})
    next_cursor = fields.String(allow_none=True, required=True)


class OrderListQuery(PageQuery):
    status = fields.String(validate=validate.OneOf(ORDER_STATUSES))
    customer_id = Id()
    owner_id = Id()


ORDER_FILTERS = ("status", "customer_id", "owner_id")


class CustomerOrdersQuery(PageQuery):
    status = fields.String(validate=validate.OneOf(ORDER_STATUSES))
    owner_id = Id()


class PaymentRequest(Schema):
    amount = Money(required=True, metadata={"description": "More than 0, at most what is outstanding (422)"})
    paid_at = fields.DateTime(metadata={"description": "Default: now"})
    method = fields.String(required=True, validate=validate.OneOf(PAYMENT_METHODS))
    reference = fields.String(allow_none=True, validate=validate.Length(max=100))


class PaymentResponse(Schema):
    id = Id(required=True)
    order_id = Id(required=True)
    amount = Money()
    paid_at = fields.DateTime()
    method = fields.String(validate=validate.OneOf(PAYMENT_METHODS))
    reference = fields.String(allow_none=True)
    created_by = Id(allow_none=True)
    created_at = fields.DateTime()


class PaymentRecordedResponse(PaymentResponse):
    order = fields.Nested(OrderResponse, metadata={"description": "The order after this payment"})


class PaymentList(Schema):
    items = fields.List(fields.Nested(PaymentResponse), required=True, metadata={"description": "Oldest first"})
