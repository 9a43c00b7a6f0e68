"""The arithmetic of priced lines and document totals: pure functions over Decimal.

Every amount is rounded half-up to the currency's minor unit at the line, in
this order: subtotal = quantity x unit price; discount = subtotal x discount%;
tax = (subtotal - discount) x tax rate%; total = subtotal - discount + tax.
A document's totals are the sums of its rounded lines, never re-rounded from
unrounded sums: what the customer adds up on paper is what we charge.
"""
from dataclasses import dataclass
from decimal import Decimal

from sales.money import ZERO, round_money

HUNDRED = Decimal(100)


@dataclass(frozen=True)
class LineAmounts:
    subtotal: Decimal
    discount: Decimal
    tax: Decimal
    total: Decimal


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    discount_total: Decimal
    tax_total: Decimal
    total: Decimal


def price_line(quantity, unit_price, discount_percent, tax_rate, currency):
    """The rounded amounts of one line."""
    subtotal = round_money(Decimal(quantity) * Decimal(unit_price), currency)
    discount = round_money(subtotal * Decimal(discount_percent) / HUNDRED, currency)
    tax = round_money((subtotal - discount) * Decimal(tax_rate) / HUNDRED, currency)
    return LineAmounts(subtotal, discount, tax, subtotal - discount + tax)


def document_totals(lines):
    """The totals of a document: the sums of its lines' rounded amounts (LineAmounts or alike)."""
    lines = list(lines)
    return Totals(
        subtotal=sum((line.subtotal for line in lines), ZERO),
        discount_total=sum((line.discount for line in lines), ZERO),
        tax_total=sum((line.tax for line in lines), ZERO),
        total=sum((line.total for line in lines), ZERO),
    )


def outstanding(total, paid_amount):
    """What is still to pay on an order (never negative)."""
    return max(Decimal(total) - Decimal(paid_amount), ZERO)


def payment_status(total, paid_amount):
    """unpaid | partial | paid."""
    if Decimal(paid_amount) <= 0:
        # An order of nothing (a total of 0) owes nothing: it counts as paid.
        return "paid" if Decimal(total) <= 0 else "unpaid"
    return "paid" if Decimal(paid_amount) >= Decimal(total) else "partial"
