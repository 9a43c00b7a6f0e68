"""Validation and output shapes of products and price lists, and the fields priced records share."""
from decimal import Decimal, InvalidOperation

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from crm_common.validation import PatchSchema, StrictSchema as Strict

from sales.money import Amount, Currency

UNITS_EXAMPLE = "piece"
SKU_RULE = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$",
                           error="1-64 letters, digits, . _ / or -, starting with a letter or digit.")
MAX_PRICE_LIST_ITEMS = 1000
MAX_PRICE_LIST_CUSTOMERS = 1000




class ExactDecimal(fields.Decimal):
    """A decimal in (string or number, never float binary noise) with at most ``places`` decimals,
    between ``low`` and ``high``; out as a string."""

    def __init__(self, places, low, high, low_inclusive=True, **kwargs):
        kwargs.setdefault("as_string", True)
        super().__init__(**kwargs)
        self.decimals, self.low, self.high, self.low_inclusive = places, Decimal(low), Decimal(high), low_inclusive

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("Not a valid number.")
        try:
            number = super()._deserialize(str(value) if isinstance(value, float) else value, attr, data, **kwargs)
        except (ValidationError, InvalidOperation):
            raise ValidationError("Not a valid number.")
        if not number.is_finite():
            raise ValidationError("Not a valid number.")
        too_low = number < self.low if self.low_inclusive else number <= self.low
        if too_low or number > self.high:
            bound = "from" if self.low_inclusive else "above"
            raise ValidationError(f"Must be {bound} {self.low} to {self.high}.")
        if number.as_tuple().exponent < -self.decimals:
            raise ValidationError(f"At most {self.decimals} decimals.")
        return number

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        # 2.000 is written "2", 13.50 is "13.5": the stored scale is not part of the value.
        return format(Decimal(value).normalize(), "f")


def Percent(**kwargs):
    """A percentage 0-100 with up to two decimals (13.5 for 13.5%)."""
    return ExactDecimal(2, 0, 100, **kwargs)


def Quantity(**kwargs):
    """More than 0, up to three decimals (1.5 hours, 0.25 kg)."""
    return ExactDecimal(3, 0, "1000000000", low_inclusive=False, **kwargs)


class MoneyOut(fields.Decimal):
    """An amount out: a string with two decimals ("1234.50"), as NUMERIC(18,2) holds it."""

    def __init__(self, **kwargs):
        super().__init__(places=2, as_string=True, **kwargs)


# --- products ----------------------------------------------------------------

class ProductFields(Strict):
    sku = fields.String(validate=SKU_RULE)
    name = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(allow_none=True, validate=validate.Length(max=10000))
    unit = fields.String(validate=validate.Length(min=1, max=20))
    list_price = Amount()
    currency = Currency()
    tax_rate = Percent()
    active = fields.Boolean()


class ProductCreate(ProductFields):
    sku = fields.String(required=True, validate=SKU_RULE)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    unit = fields.String(load_default=UNITS_EXAMPLE, validate=validate.Length(min=1, max=20))
    list_price = Amount(required=True)
    currency = Currency(required=True)
    tax_rate = Percent(load_default=Decimal(0))
    active = fields.Boolean(load_default=True)


class ProductUpdate(ProductFields, PatchSchema):
    pass


class ProductFilters(Strict):
    q = fields.String(validate=validate.Length(max=100))
    active = fields.Boolean()


class ProductOut(Schema):
    id = fields.String()
    sku = fields.String()
    name = fields.String()
    description = fields.String(allow_none=True)
    unit = fields.String()
    list_price = MoneyOut()
    currency = fields.String()
    tax_rate = Percent()
    active = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    version = fields.Integer()


# --- price lists -------------------------------------------------------------

class PriceListItemIn(Strict):
    product_id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    unit_price = Amount(required=True)
    valid_from = fields.Date(required=True)
    valid_to = fields.Date(allow_none=True, load_default=None)

    @validates_schema
    def _in_order(self, data, **kwargs):
        if data.get("valid_to") and data.get("valid_from") and data["valid_to"] < data["valid_from"]:
            raise ValidationError({"valid_to": ["Must not be before valid_from."]})


class PriceListFields(Strict):
    name = fields.String(validate=validate.Length(min=1, max=100))
    currency = Currency()
    active = fields.Boolean()
    items = fields.List(fields.Nested(PriceListItemIn), validate=validate.Length(max=MAX_PRICE_LIST_ITEMS))
    customer_ids = fields.List(fields.String(validate=validate.Length(min=1, max=36)),
                               validate=validate.Length(max=MAX_PRICE_LIST_CUSTOMERS))


class PriceListCreate(PriceListFields):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    currency = Currency(required=True)
    active = fields.Boolean(load_default=True)
    items = fields.List(fields.Nested(PriceListItemIn), load_default=list,
                        validate=validate.Length(max=MAX_PRICE_LIST_ITEMS))
    customer_ids = fields.List(fields.String(validate=validate.Length(min=1, max=36)), load_default=list,
                               validate=validate.Length(max=MAX_PRICE_LIST_CUSTOMERS))


class PriceListUpdate(PriceListFields, PatchSchema):
    """items and customer_ids, when given, replace the list's items and customers."""


class PriceListItemOut(Schema):
    id = fields.String()
    product_id = fields.String()
    unit_price = MoneyOut()
    valid_from = fields.Date()
    valid_to = fields.Date(allow_none=True)


class PriceListOut(Schema):
    id = fields.String()
    name = fields.String()
    currency = fields.String()
    active = fields.Boolean()
    items = fields.List(fields.Nested(PriceListItemOut))
    customer_ids = fields.List(fields.String())
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    version = fields.Integer()
