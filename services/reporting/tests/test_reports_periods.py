"""Periods of the reports: default ranges, labels, and days rolled up across year ends."""
from datetime import date

import pytest

from reporting.periods import (
    DAY, MONTH, QUARTER, WEEK, default_range, forward_range, period_label, period_start, roll_up)


@pytest.mark.parametrize("day, start, label", [
    # 2026 starts on a Thursday: its week 1 starts in 2025, and it has 53 weeks.
    (date(2025, 12, 29), date(2025, 12, 29), "2026-W01"),
    (date(2026, 1, 1), date(2025, 12, 29), "2026-W01"),
    (date(2026, 12, 31), date(2026, 12, 28), "2026-W53"),
    (date(2027, 1, 3), date(2026, 12, 28), "2026-W53"),
    (date(2027, 1, 4), date(2027, 1, 4), "2027-W01"),
    (date(2026, 11, 29), date(2026, 11, 23), "2026-W48"),
])
def test_iso_weeks_across_year_ends(day, start, label):
    assert period_start(day, WEEK) == start
    assert period_label(start, WEEK) == label


@pytest.mark.parametrize("day, start, label", [
    (date(2026, 12, 31), date(2026, 10, 1), "2026-Q4"),
    (date(2027, 1, 1), date(2027, 1, 1), "2027-Q1"),
    (date(2026, 6, 30), date(2026, 4, 1), "2026-Q2"),
])
def test_quarters(day, start, label):
    assert period_start(day, QUARTER) == start
    assert period_label(start, QUARTER) == label


def test_days_and_months():
    assert period_label(period_start(date(2026, 11, 29), DAY), DAY) == "2026-11-29"
    assert period_start(date(2026, 12, 31), MONTH) == date(2026, 12, 1)
    assert period_label(date(2026, 12, 1), MONTH) == "2026-12"


def test_default_range_is_the_last_twelve_calendar_months():
    assert default_range(date(2026, 11, 29)) == (date(2025, 12, 1), date(2026, 11, 29))
    # A given ``to`` moves the default ``from`` with it; January reaches back into February.
    assert default_range(date(2026, 11, 29), date_to=date(2026, 1, 31)) == (date(2025, 2, 1), date(2026, 1, 31))
    assert default_range(date(2026, 11, 29), date_from=date(2026, 3, 5)) == (date(2026, 3, 5), date(2026, 11, 29))


def test_forecast_range_is_this_month_and_the_eleven_after():
    assert forward_range(date(2026, 11, 29)) == (date(2026, 11, 1), date(2027, 10, 31))
    assert forward_range(date(2026, 3, 10)) == (date(2026, 3, 1), date(2027, 2, 28))


def test_roll_up_sums_days_into_periods_sorted_with_missing_keys_first():
    rows = [
        (date(2027, 1, 2), "CNY", (1, 10)),
        (date(2026, 12, 31), "CNY", (2, 5)),
        (date(2027, 1, 4), "CNY", (1, 1)),
        (date(2026, 12, 30), None, (1, 1)),
        (date(2026, 12, 29), "USD", (3, 3)),
    ]
    assert roll_up(rows, WEEK) == [
        (date(2026, 12, 28), None, [1, 1]),
        (date(2026, 12, 28), "CNY", [3, 15]),
        (date(2026, 12, 28), "USD", [3, 3]),
        (date(2027, 1, 4), "CNY", [1, 1]),
    ]
    assert [(start, key) for start, key, _ in roll_up(rows, QUARTER)] == [
        (date(2026, 10, 1), None), (date(2026, 10, 1), "CNY"), (date(2026, 10, 1), "USD"),
        (date(2027, 1, 1), "CNY")]
