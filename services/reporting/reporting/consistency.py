"""Do the read models agree with the sources? Totals compared over all records; and do the
rollups agree with the facts they sum (each computed again from the facts and compared)?

Plain Python: the sources' totals arrive as plain dicts (customers.reporting_totals()
and sales.reporting_totals()); nothing here knows about nameko. No visibility
scope applies: the check is about the data, for an administrator.
"""
from collections import defaultdict
from decimal import Decimal

from sqlalchemy import func, select

from crm_common.context import RequestContext
from crm_common.errors import Forbidden
from crm_common.types import utcnow

from reporting import rollups
from reporting.models import CustomerFact, OrderFact

CENT = Decimal("0.01")


def require_admin(context: RequestContext):
    if not context.is_admin:
        raise Forbidden("Only an administrator may check the reports' consistency.")


def consistency(session, customers_totals, sales_totals, now=None):
    """{"checked_at", "consistent", "checks": [{"name", "reporting", "source", "difference"}],
    "differences": [the checks that differ]}; difference = reporting − source."""
    checks = [_count_check("customers", _customer_count(session), int(customers_totals.get("customers") or 0))]
    orders, by_month = _order_totals(session)
    checks.append(_count_check("orders", orders, int(sales_totals.get("orders") or 0)))
    source_by_month = {(row["month"], row["currency"]): (int(row.get("orders") or 0), Decimal(row["revenue"]))
                       for row in sales_totals.get("revenue_by_month") or []}
    for month, currency in sorted(set(by_month) | set(source_by_month)):
        ours = by_month.get((month, currency), (0, Decimal(0)))
        theirs = source_by_month.get((month, currency), (0, Decimal(0)))
        checks.append(_count_check(f"orders {month} {currency}", ours[0], theirs[0]))
        checks.append(_money_check(f"revenue {month} {currency}", ours[1], theirs[1]))
    checks += _rollup_checks(session)
    differences = [check for check in checks if Decimal(str(check["difference"])) != 0]
    return {"checked_at": (now or utcnow()).isoformat(), "consistent": not differences,
            "checks": checks, "differences": differences}


def _rollup_checks(session):
    """One check per rollup, named "rollup <table>": how many of its rows differ from the same sums
    computed from the facts (0 when it agrees). A rebuild computes the rollups again."""
    return [_count_check(f"rollup {table}", len(keys), 0) for table, keys in rollups.differences(session).items()]


def _customer_count(session):
    return session.execute(
        select(func.count()).select_from(CustomerFact).where(CustomerFact.deleted.is_(False))).scalar_one()


def _order_totals(session):
    """(counted orders, {(month, currency): (orders, revenue)}): grouped by day in SQL, by month here."""
    total = 0
    by_month = defaultdict(lambda: [0, Decimal(0)])
    for placed_on, currency, orders, revenue in session.execute(
            select(OrderFact.placed_on, OrderFact.currency, func.count(), func.sum(OrderFact.total))
            .where(OrderFact.counted.is_(True))
            .group_by(OrderFact.placed_on, OrderFact.currency)):
        total += orders
        if placed_on is None:
            continue  # a counted order without a confirmation date: only the total sees it
        entry = by_month[(placed_on.strftime("%Y-%m"), currency)]
        entry[0] += orders
        entry[1] += Decimal(revenue or 0)
    return total, {key: tuple(value) for key, value in by_month.items()}


def _count_check(name, reporting, source):
    return {"name": name, "reporting": reporting, "source": source, "difference": reporting - source}


def _money_check(name, reporting, source):
    def text(value):
        return str(Decimal(value).quantize(CENT))
    return {"name": name, "reporting": text(reporting), "source": text(source),
            "difference": text(Decimal(reporting) - Decimal(source))}
