"""The money arithmetic of lines and documents: what a customer checks on paper."""
from decimal import Decimal

import pytest

from sales.pricing import LineAmounts, document_totals, outstanding, payment_status, price_line

D = Decimal


def test_a_line_rounds_subtotal_then_discount_then_tax_each_half_up():
    line = price_line(D("3"), D("19.99"), D("10"), D("13"), "CNY")
    # 59.97; discount 5.997 -> 6.00; tax on 53.97 is 7.0161 -> 7.02
    assert line == LineAmounts(D("59.97"), D("6.00"), D("7.02"), D("60.99"))


@pytest.mark.parametrize("quantity, unit_price, expected", [
    ("0.5", "0.25", "0.13"),   # 0.125: half-up, where banker's rounding would say 0.12
    ("0.5", "0.05", "0.03"),   # 0.025
    ("1.5", "0.01", "0.02"),   # 0.015
    ("0.001", "4.99", "0.00"),  # 0.00499
    ("2.125", "8.00", "17.00"),
])
def test_subtotals_round_half_up_to_the_cent(quantity, unit_price, expected):
    assert price_line(D(quantity), D(unit_price), D(0), D(0), "CNY").subtotal == D(expected)


def test_discount_and_tax_round_half_up_too():
    # subtotal 10.05: 50% discount is 5.025 -> 5.03; tax 10% of 5.02 is 0.502 -> 0.50
    line = price_line(D(1), D("10.05"), D(50), D(10), "CNY")
    assert (line.discount, line.tax, line.total) == (D("5.03"), D("0.50"), D("5.52"))


def test_a_currency_without_cents_rounds_to_whole_units():
    line = price_line(D("1.5"), D("333"), D("0"), D("10"), "JPY")
    assert line == LineAmounts(D("500"), D("0"), D("50"), D("550"))


def test_full_discount_and_zero_tax_give_zero():
    assert price_line(D(7), D("12.34"), D(100), D(13), "CNY").total == D("0.00")


def test_document_totals_are_sums_of_rounded_lines_not_rounded_sums():
    lines = [price_line(D(1), D("0.01"), D(0), D(50), "CNY") for _ in range(3)]
    # each line's tax is 0.005 -> 0.01; rounding the unrounded sum 0.015 would give 0.02
    totals = document_totals(lines)
    assert totals.tax_total == D("0.03")
    assert totals.subtotal == D("0.03") and totals.total == D("0.06") and totals.discount_total == D("0.00")
    assert totals.total == sum(line.total for line in lines)


def test_totals_of_mixed_lines_add_up_line_by_line():
    lines = [price_line(D("3"), D("19.99"), D("10"), D("13"), "CNY"),
             price_line(D("0.333"), D("100.00"), D("0"), D("6"), "CNY")]
    totals = document_totals(lines)
    assert totals.subtotal == D("59.97") + D("33.30")
    assert totals.total == totals.subtotal - totals.discount_total + totals.tax_total


def test_an_empty_document_totals_zero():
    assert document_totals([]).total == D("0.00")


def test_outstanding_and_payment_status_follow_the_paid_amount():
    assert (outstanding(D("100.00"), D("0")), payment_status(D("100.00"), D("0"))) == (D("100.00"), "unpaid")
    assert (outstanding(D("100.00"), D("30.00")), payment_status(D("100.00"), D("30.00"))) == (D("70.00"), "partial")
    assert (outstanding(D("100.00"), D("100.00")), payment_status(D("100.00"), D("100.00"))) == (D("0.00"), "paid")
    assert payment_status(D("0.00"), D("0.00")) == "paid"
