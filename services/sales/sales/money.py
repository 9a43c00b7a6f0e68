"""Money: Decimal amounts with a currency, rounded half-up to the currency's minor unit.

Never float: 0.1 + 0.2 is not 0.3 in binary floating point, and a CRM that
loses a cent in a total loses its users' trust. Amounts travel as strings on
the wire ("1234.50") and are NUMERIC(18,2) in the database.
"""
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from marshmallow import ValidationError, fields, validate

# ISO 4217 currencies whose minor unit is not the cent. Everything else has two decimals.
MINOR_UNITS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "HUF": 2}
DEFAULT_MINOR_UNIT = 2
# The largest amount NUMERIC(18,2) holds with room for totals.
MAX_AMOUNT = Decimal("9999999999999.99")
ZERO = Decimal("0.00")


def minor_unit(currency):
    return MINOR_UNITS.get(currency, DEFAULT_MINOR_UNIT)


def round_money(amount, currency):
    """``amount`` rounded half-up to the currency's minor unit (2.345 CNY → 2.35; 1234.5 JPY → 1235)."""
    exponent = Decimal(1).scaleb(-minor_unit(currency))
    return Decimal(amount).quantize(exponent, rounding=ROUND_HALF_UP)


def as_wire(amount):
    """How an amount is written in JSON: a string with its decimals ("1234.50")."""
    return None if amount is None else format(Decimal(amount), "f")


class Amount(fields.Decimal):
    """A money amount in: a string ("12.30") or a number; out: a string. Never negative unless allowed."""

    def __init__(self, *, allow_negative=False, **kwargs):
        kwargs.setdefault("as_string", True)
        super().__init__(**kwargs)
        self.allow_negative = allow_negative

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("Not a valid amount: write it like \"1234.50\".")
        try:
            amount = super()._deserialize(str(value) if isinstance(value, float) else value, attr, data, **kwargs)
        except (ValidationError, InvalidOperation):
            raise ValidationError("Not a valid amount: write it like \"1234.50\".")
        if not amount.is_finite():
            raise ValidationError("Not a valid amount: write it like \"1234.50\".")
        if amount < 0 and not self.allow_negative:
            raise ValidationError("Must not be negative.")
        if abs(amount) > MAX_AMOUNT:
            raise ValidationError(f"Must be at most {MAX_AMOUNT}.")
        if amount.as_tuple().exponent < -2:
            raise ValidationError("At most two decimals.")
        return amount


class Currency(fields.String):
    """An ISO 4217 code, upper-cased: CNY, USD, EUR ..."""

    def __init__(self, **kwargs):
        kwargs.setdefault("validate", validate.Regexp(r"^[A-Z]{3}$", error="Use a three-letter ISO 4217 code, e.g. CNY."))
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        return value.strip().upper()
