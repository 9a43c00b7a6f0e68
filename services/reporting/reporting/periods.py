"""Date ranges and periods of the reports: days rolled up to weeks, months and quarters.

Reports group by UTC calendar day in SQL (portable between SQLite and
PostgreSQL, and a year is at most 366 groups) and roll the days up here.
Weeks are ISO weeks: they start on Monday and belong to the year of their
Thursday, so 2026-12-31 is in 2026-W53 and 2027-01-04 starts 2027-W01.

Plain Python; nothing here knows about nameko or SQL.
"""
from datetime import date, timedelta
from functools import lru_cache

DAY, WEEK, MONTH, QUARTER = "day", "week", "month", "quarter"
GRANULARITIES = (DAY, WEEK, MONTH, QUARTER)
# Day rows of a longer range would make a report (and a spreadsheet) nobody reads.
MAX_DAY_RANGE_DAYS = 3 * 366


def add_months(day, months):
    """The first day of the month ``months`` after (or before) ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def last_day_of_month(day):
    return add_months(day, 1) - timedelta(days=1)


def default_range(today, date_from=None, date_to=None):
    """(from, to): to defaults to today; from to the first day of the month eleven months before to
    (the last 12 calendar months, the current one included)."""
    date_to = date_to or today
    return date_from or add_months(date_to, -11), date_to


def forward_range(today, date_from=None, date_to=None):
    """(from, to) of a forecast: from this month's first day to the last day eleven months later."""
    date_from = date_from or today.replace(day=1)
    return date_from, date_to or last_day_of_month(add_months(date_from, 11))


# Cached: a report asks for the same few hundred days and periods once per row.
@lru_cache(maxsize=8192)
def period_start(day, granularity):
    """The first day of the period holding ``day``."""
    if granularity == DAY:
        return day
    if granularity == WEEK:
        return day - timedelta(days=day.isoweekday() - 1)
    if granularity == MONTH:
        return day.replace(day=1)
    if granularity == QUARTER:
        return date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
    raise ValueError(f"unknown granularity {granularity!r}")


@lru_cache(maxsize=8192)
def period_label(start, granularity):
    """"2026-11-29", "2026-W48", "2026-11" or "2026-Q4" for the period starting on ``start``."""
    if granularity == DAY:
        return start.isoformat()
    if granularity == WEEK:
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    if granularity == MONTH:
        return f"{start.year}-{start.month:02d}"
    if granularity == QUARTER:
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    raise ValueError(f"unknown granularity {granularity!r}")


def month_label(day):
    return None if day is None else f"{day.year}-{day.month:02d}"


def roll_up(rows, granularity):
    """Sum per-day figures into periods.

    ``rows``: (day, key, values) with ``key`` any hashable (e.g. a currency)
    and ``values`` a tuple of numbers. Returns [(period_start, key, [sums])]
    sorted by period, then key (None keys first).
    """
    sums = {}
    for day, key, values in rows:
        slot = (period_start(day, granularity), key)
        total = sums.get(slot)
        if total is None:
            sums[slot] = list(values)
        else:
            for index, value in enumerate(values):
                total[index] += value
    return [(start, key, values) for (start, key), values
            in sorted(sums.items(), key=lambda item: (item[0][0], sort_key(item[0][1])))]


def sort_key(key):
    """Orders keys that may hold None (missing dimension values) without comparing None to text."""
    if type(key) is tuple:
        return tuple((part is not None, "" if part is None else part) for part in key)
    return (key is not None, "" if key is None else key)
