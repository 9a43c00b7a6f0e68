"""The reports, as one caller may run them: queries over the read models.

Every query aggregates in SQL, grouped by period (the database truncates
the UTC day: see period_start_sql) and a few keys, so no fact row is ever
loaded into Python; what comes back is shaped, formatted and sorted here.
The SQL runs on SQLite (unit tests) and PostgreSQL (production); the tests
run every report on both. Comments name the index each query is meant to
use; the sales reports join customer_facts only when a customer attribute
(region, industry, tier) is asked for. The two reports managers open most,
sales-by-period and the funnel, read rollups (reporting.rollups) that the
database keeps with the facts, instead of a year of orders or opportunities.

Figures a caller sees are limited to the records they may see
(crm_common.permissions.visibility on each fact's own owner columns);
filters narrow that further, never widen it. Money is summed per currency
and never across currencies.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
from contextlib import contextmanager
from datetime import timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from itertools import groupby

from sqlalchemy import (
    Date, Integer, String, and_, cast, func, literal, null, or_, select, text, tuple_, type_coerce, union_all)

from crm_common import tabular
from crm_common.context import RequestContext
from crm_common.errors import NotFound, ValidationFailed
from crm_common.permissions import visibility
from crm_common.types import utcnow
from crm_common.validation import load

from reporting import periods, report_tables
from reporting.models import (
    ContractFact, CustomerFact, CustomerLastFollowup, FollowupFact, FunnelCohortRollup, FunnelStageTimeRollup,
    OpportunityFact, OrderFact, OrderLineFact, PipelineStageRollup, SalesDayRegionRollup, SalesDayRollup)
from reporting.schemas import (
    LIFECYCLE_STAGES, ActivitiesFilters, ContractsFilters, CustomersSummaryFilters, ExportOptions, ForecastFilters,
    FunnelFilters, SalesByOwnerFilters, SalesByPeriodFilters, SalesByProductFilters, TopCustomersFilters)

CENT = Decimal("0.01")
TENTH = Decimal("0.1")
ZERO = Decimal("0")
SECONDS_PER_DAY = Decimal(86400)
# Lists inside a report (inactive customers, expiring contracts) stop here; their count is complete.
MAX_ITEMS = 100
CUSTOMER_ATTRIBUTES = ("region", "industry", "tier")
ACTIVE_CONTRACT_STATUSES = ("active", "signed")
CUSTOMER_DIMENSIONS = ("tier", "industry", "region", "source")
# A stage position the facts do not know, in the rollups' keys (which hold no NULL).
NO_POSITION = -1


# --- formatting: what the wire carries ---------------------------------------

def decimal(value):
    """SQL sums arrive as Decimal (PostgreSQL) or as float/int (SQLite); None is nothing summed."""
    if value is None:
        return ZERO
    if isinstance(value, Decimal):
        return value
    # str() first: Decimal(0.1) would carry the float's binary error into the cents.
    return Decimal(str(value))


def money(value):
    return str(decimal(value).quantize(CENT, ROUND_HALF_UP))


def quantity(value):
    """A quantity without trailing zeros: "5", "2.5", "0.125"."""
    return format(decimal(value).quantize(Decimal("0.001"), ROUND_HALF_UP).normalize(), "f")


def percent(part, whole):
    """part / whole as a percent string with 2 decimals, None when whole is 0."""
    whole = decimal(whole)
    if whole == 0:
        return None
    return str((decimal(part) * 100 / whole).quantize(CENT, ROUND_HALF_UP))


def days(seconds, count):
    """Mean of ``count`` durations totalling ``seconds``, in days with 1 decimal; None without any."""
    if not count:
        return None
    return str((decimal(seconds) / count / SECONDS_PER_DAY).quantize(TENTH, ROUND_HALF_UP))


def period_start_sql(session, day_column, granularity):
    """The first day of ``day_column``'s period, computed by the database.

    Grouping by period in SQL keeps the rows a report reads to periods x keys:
    grouping by day and rolling up in Python reads days x keys, which for
    follow-ups (per user and type) is tens of thousands of rows a year.
    """
    if granularity == periods.DAY:
        return day_column
    if session.get_bind().dialect.name == "sqlite":
        if granularity == periods.WEEK:
            # Back 6 days, then forward to a Monday: the Monday on or before the day.
            start = func.date(day_column, "-6 days", "weekday 1")
        elif granularity == periods.MONTH:
            start = func.date(day_column, "start of month")
        else:
            months_into_quarter = (cast(func.strftime("%m", day_column), Integer) - 1) % 3
            start = func.date(day_column, "start of month",
                              literal("-").concat(cast(months_into_quarter, String)).concat(" months"))
        return type_coerce(start, Date)
    # date_trunc's week is the ISO week (from Monday).
    return cast(func.date_trunc(granularity, day_column), Date)


# --- the reports -------------------------------------------------------------

class Reports:
    """Each report as a JSON-able dict; ``run(name, filters)`` picks one by name."""

    def __init__(self, session, context: RequestContext, now=None):
        self.session = session
        self.context = context
        # Fixed by tests; otherwise the moment the report runs.
        self.now = now or utcnow()
        self.today = self.now.astimezone(timezone.utc).date()

    NAMES = {
        "customers-summary": "customers_summary",
        "sales-by-period": "sales_by_period",
        "sales-by-owner": "sales_by_owner",
        "sales-by-product": "sales_by_product",
        "sales-top-customers": "sales_top_customers",
        "sales-funnel": "sales_funnel",
        "sales-forecast": "sales_forecast",
        "activities": "activities",
        "contracts": "contracts",
    }

    def run(self, name, filters=None):
        method = self.NAMES.get(name)
        if method is None:
            raise NotFound(f"There is no report named {name!r}.")
        return getattr(self, method)(filters)

    def export(self, name, filters=None, file_format="csv"):
        """The report as a CSV or XLSX file (see reporting.report_tables)."""
        options = load(ExportOptions, {"format": file_format or tabular.CSV})
        return report_tables.export(name, self.run(name, filters), options["format"])

    # --- shared pieces ---------------------------------------------------

    @contextmanager
    def _planner_setting(self, name, value):
        """A PostgreSQL planner setting for the statements inside. SET and RESET rather than SET
        LOCAL: a report runs without a transaction (read-only), where SET LOCAL does nothing."""
        if self.session.get_bind().dialect.name != "postgresql":
            yield
            return
        self.session.execute(text(f"SET {name} = {value}"))
        try:
            yield
        finally:
            self.session.execute(text(f"RESET {name}"))

    def _range(self, filters, granularity=None, forward=False):
        resolve = periods.forward_range if forward else periods.default_range
        date_from, date_to = resolve(self.today, filters.get("date_from"), filters.get("date_to"))
        if date_from > date_to:
            raise ValidationFailed("from is after to.", {"from": ["Must be on or before to."]})
        if granularity == periods.DAY and (date_to - date_from).days + 1 > periods.MAX_DAY_RANGE_DAYS:
            raise ValidationFailed("Too many days for a daily report.",
                                   {"granularity": ["Use week or a longer period for a range over 3 years."]})
        return date_from, date_to

    def _scope(self, statement, fact, filters):
        """Visibility and the owner filters, on the fact's own owner columns."""
        condition = visibility(self.context, fact.owner_id, fact.owner_team_id)
        if condition is not None:
            statement = statement.where(condition)
        if "owner_id" in filters:
            statement = statement.where(fact.owner_id == str(filters["owner_id"]))
        if "team" in filters:
            statement = statement.where(fact.owner_team_id == filters["team"])
        return statement

    @staticmethod
    def _customer_attributes(statement, fact, filters):
        """Joins customer_facts only when a customer attribute is asked for (a join over every
        order costs more than the whole report otherwise)."""
        wanted = [name for name in CUSTOMER_ATTRIBUTES if name in filters]
        if not wanted:
            return statement
        statement = statement.join(CustomerFact, CustomerFact.customer_id == fact.customer_id)
        for name in wanted:
            statement = statement.where(getattr(CustomerFact, name) == filters[name])
        return statement

    def _orders(self, columns, filters, date_from, date_to, fact=OrderFact):
        # Uses ix_*_placed_on, or ix_*_owner_placed_on / ix_order_facts_team_placed_on when scoped.
        statement = select(*columns).where(
            fact.counted.is_(True), fact.placed_on >= date_from, fact.placed_on <= date_to)
        statement = self._scope(statement, fact, filters)
        return self._customer_attributes(statement, fact, filters)

    # --- 1. customers-summary ----------------------------------------------

    def customers_summary(self, filters=None):
        filters = load(CustomersSummaryFilters, filters or {})
        granularity = filters["granularity"]
        date_from, date_to = self._range(filters, granularity)

        def current(*columns):
            statement = select(*columns).where(CustomerFact.deleted.is_(False))
            statement = self._scope(statement, CustomerFact, filters)
            for name in (*CUSTOMER_ATTRIBUTES, "source"):
                if name in filters:
                    statement = statement.where(getattr(CustomerFact, name) == filters[name])
            return statement

        dimensions = ("lifecycle_stage",) + CUSTOMER_DIMENSIONS
        counts = self._breakdowns(current, dimensions)

        by_stage = dict.fromkeys(LIFECYCLE_STAGES, 0)
        # A stage this service does not know yet is still counted, under its own name.
        by_stage.update(counts["lifecycle_stage"])

        def ranked(values):
            return [{"key": key, "count": count} for key, count
                    in sorted(values.items(), key=lambda item: (-item[1], periods.sort_key(item[0])))]

        def per_period(day_column, *conditions):
            # ix_customer_facts_created_on / ix_customer_facts_churned_on.
            start = period_start_sql(self.session, day_column, granularity)
            statement = current(start, func.count()).where(
                day_column >= date_from, day_column <= date_to, *conditions).group_by(start)
            rows = ((day, None, (count,)) for day, count in self.session.execute(statement))
            return [{"period": periods.period_label(start, granularity), "period_start": start.isoformat(),
                     "count": values[0]} for start, _, values in periods.roll_up(rows, granularity)]

        return {
            "from": date_from.isoformat(), "to": date_to.isoformat(), "granularity": granularity,
            "total": sum(by_stage.values()),
            "by_lifecycle_stage": [{"key": key, "count": count} for key, count in by_stage.items()],
            "by_tier": ranked(counts["tier"]),
            "by_industry": ranked(counts["industry"]),
            "by_region": ranked(counts["region"]),
            "by_source": ranked(counts["source"]),
            "new_customers": per_period(CustomerFact.created_on),
            "churned": per_period(CustomerFact.churned_on, CustomerFact.lifecycle_stage == "churned"),
        }

    def _breakdowns(self, current, dimensions):
        """{dimension: {value: customers}} of the customers ``current(*columns)`` selects.

        PostgreSQL counts every dimension in one pass over the rows (GROUPING SETS; GROUPING() says
        which dimension a row counts, since a NULL value is a key too): a busy rep's 10,000
        customers were read five times by the UNION ALL of one GROUP BY per dimension (75 ms).
        SQLite has no grouping sets and keeps the union: one round trip all the same."""
        if self.session.get_bind().dialect.name != "postgresql":
            return self._breakdowns_one_by_one(current, dimensions)
        counts = {name: {} for name in dimensions}
        columns = [getattr(CustomerFact, name) for name in dimensions]
        statement = current(*columns, *(func.grouping(column) for column in columns), func.count()).group_by(
            func.grouping_sets(*(tuple_(column) for column in columns)))
        width = len(columns)
        for row in self.session.execute(statement):
            dimension = next(index for index in range(width) if row[width + index] == 0)
            counts[dimensions[dimension]][row[dimension]] = row[-1]
        return counts

    def _breakdowns_one_by_one(self, current, dimensions):
        counts = {name: {} for name in dimensions}
        breakdown = union_all(*(
            current(literal(name).label("dimension"), getattr(CustomerFact, name).label("key"),
                    func.count().label("count")).group_by(getattr(CustomerFact, name))
            for name in dimensions))
        for dimension, key, count in self.session.execute(breakdown):
            counts[dimension][key] = count
        return counts

    # --- 2. sales-by-period ------------------------------------------------

    def sales_by_period(self, filters=None):
        filters = load(SalesByPeriodFilters, filters or {})
        granularity = filters["granularity"]
        date_from, date_to = self._range(filters, granularity)
        if any(name in filters for name in CUSTOMER_ATTRIBUTES if name != "region"):
            statements = [self._sales_by_day_from_orders(filters, granularity, date_from, date_to)]
        else:
            statements = self._sales_by_day_from_rollup(filters, granularity, date_from, date_to)
        period_rows = periods.roll_up(((day, currency, (orders, decimal(revenue), decimal(paid)))
                                       for statement in statements
                                       for day, currency, orders, revenue, paid in self.session.execute(statement)),
                                      granularity)
        rows = [{"period": periods.period_label(start, granularity), "period_start": start.isoformat(),
                 "currency": currency, **_sales_figures(*values)}
                for start, currency, values in period_rows]
        totals = {}
        for _, currency, values in period_rows:
            total = totals.setdefault(currency, [0, ZERO, ZERO])
            for index, value in enumerate(values):
                total[index] += value
        return {
            "from": date_from.isoformat(), "to": date_to.isoformat(), "granularity": granularity,
            "rows": rows,
            "totals": [{"currency": currency, **_sales_figures(*totals[currency])} for currency in sorted(totals)],
        }

    def _sales_by_day_from_rollup(self, filters, granularity, date_from, date_to):
        """[select of (period start, currency, orders, revenue, paid)], summed together: from the
        rollups, a few thousand rows a year, instead of every order (with region, no industry or tier).

        - A team's or everyone's sales: sales_day_region_rollups (day x team x region x currency).
          A manager sees the team's and their own elsewhere: the second comes from the per-owner
          figures, a handful of rows.
        - One owner's (a rep, or ``owner_id``): sales_day_rollups (day x owner x team x currency);
          with a region, that owner's orders by their region copy (no join)."""
        context = self.context
        if "owner_id" in filters or context.role == "sales" or (context.role == "manager" and not context.team_id):
            return [self._owner_sales(filters, granularity, date_from, date_to)]
        if context.role == "manager":
            # The team's, and the manager's own outside it (visibility: team or mine).
            return [self._team_sales(filters, granularity, date_from, date_to, team=context.team_id),
                    self._owner_sales(filters, granularity, date_from, date_to, outside_team=context.team_id)]
        if visibility(context, OrderFact.owner_id, OrderFact.owner_team_id) is None:
            return [self._team_sales(filters, granularity, date_from, date_to)]
        # Any other role sees only its own (visibility decides, in _scope).
        return [self._owner_sales(filters, granularity, date_from, date_to)]

    def _team_sales(self, filters, granularity, date_from, date_to, team=None):
        rollup = SalesDayRegionRollup
        start = period_start_sql(self.session, rollup.day, granularity)
        statement = select(start, rollup.currency, func.sum(rollup.orders), func.sum(rollup.revenue),
                           func.sum(rollup.paid)).where(rollup.day >= date_from, rollup.day <= date_to)
        for value in (team, filters.get("team")):
            if value is not None:
                statement = statement.where(rollup.owner_team_id == value)
        if "region" in filters:
            statement = statement.where(rollup.region == filters["region"])
        # No HAVING needed: a rollup row whose orders all moved away (cancelled, another owner or
        # region) is deleted by its trigger, so every period read has orders.
        return statement.group_by(start, rollup.currency)

    def _owner_sales(self, filters, granularity, date_from, date_to, outside_team=None):
        """One owner's figures as visibility and the owner filters scope them (``outside_team``:
        only those of other teams than this one)."""
        if "region" in filters:
            # One owner's orders in a region: ix_order_facts_owner_region.
            source = OrderFact
            start = period_start_sql(self.session, source.placed_on, granularity)
            statement = select(start, source.currency, func.count(), func.sum(source.total),
                               func.sum(source.paid_amount)).where(
                source.counted.is_(True), source.placed_on >= date_from, source.placed_on <= date_to,
                source.customer_region == filters["region"])
        else:
            source = SalesDayRollup
            start = period_start_sql(self.session, source.day, granularity)
            statement = select(start, source.currency, func.sum(source.orders), func.sum(source.revenue),
                               func.sum(source.paid)).where(source.day >= date_from, source.day <= date_to)
        if outside_team is None:
            return self._scope(statement, source, filters).group_by(start, source.currency)
        # A manager's own figures in other teams (the team's come from _team_sales): said outright,
        # since "team or mine, and not the team" would keep the database from the owner's index.
        statement = statement.where(source.owner_id == self.context.user_id,
                                    func.coalesce(source.owner_team_id, "") != outside_team)
        if "team" in filters:
            statement = statement.where(source.owner_team_id == filters["team"])
        return statement.group_by(start, source.currency)

    def _sales_by_day_from_orders(self, filters, granularity, date_from, date_to):
        """The same from order_facts, for a customer attribute filter: the rollup has no customer
        attributes, because they change with the customer (a customer.updated moving its region would
        have to move every order of it between rollup rows) and a merge would move them again."""
        start = period_start_sql(self.session, OrderFact.placed_on, granularity)
        return self._orders(
            (start, OrderFact.currency, func.count(), func.sum(OrderFact.total), func.sum(OrderFact.paid_amount)),
            filters, date_from, date_to).group_by(start, OrderFact.currency)

    # --- 3. sales-by-owner -------------------------------------------------

    def sales_by_owner(self, filters=None):
        filters = load(SalesByOwnerFilters, filters or {})
        date_from, date_to = self._range(filters)
        if any(name in filters for name in CUSTOMER_ATTRIBUTES if name != "region"):
            statement = self._sales_by_owner_from_orders(filters, date_from, date_to)
        else:
            statement = self._sales_by_owner_from_rollup(filters, date_from, date_to)
        rows = []
        for owner_id, currency, orders, revenue, paid in self.session.execute(statement):
            figures = _sales_figures(orders, decimal(revenue), decimal(paid))
            del figures["average_order_value"]
            # The rollup keys an order without owner under '' (its keys hold no NULL).
            rows.append({"owner_id": owner_id or None, "currency": currency, **figures})
        rows.sort(key=lambda row: (-Decimal(row["revenue"]), row["currency"], periods.sort_key(row["owner_id"])))
        return {"from": date_from.isoformat(), "to": date_to.isoformat(), "rows": rows}

    def _sales_by_owner_from_rollup(self, filters, date_from, date_to):
        """(owner, currency, orders, revenue, paid) from sales_day_rollups, or with a region from the
        orders' region copy (no join)."""
        if "region" in filters:
            source = OrderFact
            statement = select(source.owner_id, source.currency, func.count(), func.sum(source.total),
                               func.sum(source.paid_amount)).where(
                source.counted.is_(True), source.placed_on >= date_from, source.placed_on <= date_to,
                source.customer_region == filters["region"])
        else:
            source = SalesDayRollup
            statement = select(source.owner_id, source.currency, func.sum(source.orders), func.sum(source.revenue),
                               func.sum(source.paid)).where(source.day >= date_from, source.day <= date_to)
        return self._scope(statement, source, filters).group_by(source.owner_id, source.currency)

    def _sales_by_owner_from_orders(self, filters, date_from, date_to):
        """The same from order_facts joined with the customers, for an industry or tier filter."""
        return self._orders(
            (OrderFact.owner_id, OrderFact.currency, func.count(), func.sum(OrderFact.total),
             func.sum(OrderFact.paid_amount)),
            filters, date_from, date_to).group_by(OrderFact.owner_id, OrderFact.currency)

    # --- 4. sales-by-product -----------------------------------------------

    def sales_by_product(self, filters=None):
        filters = load(SalesByProductFilters, filters or {})
        date_from, date_to = self._range(filters)
        line = OrderLineFact
        statement = self._orders(
            (line.product_id, line.currency, func.sum(line.quantity), func.sum(line.total)),
            filters, date_from, date_to, fact=line,
        ).group_by(line.product_id, line.currency)
        if "product_id" in filters:
            # ix_order_line_facts_product_placed_on.
            statement = statement.where(line.product_id == str(filters["product_id"]))
        sums = statement.subquery()

        def latest(column):
            # The product's most recent line names it (a renamed product shows its new name):
            # one backward step on ix_order_line_facts_product_placed_on per product.
            return (select(column).where(line.product_id == sums.c.product_id, line.counted.is_(True),
                                         line.placed_on.is_not(None))
                    # The tie-breakers make sku and description come from the same line.
                    .order_by(line.placed_on.desc(), line.order_id.desc(), line.position.desc())
                    .limit(1).scalar_subquery())

        products = [
            {"product_id": product_id, "currency": currency, "sku": sku, "description": description,
             "quantity": decimal(qty), "revenue": decimal(revenue)}
            for product_id, currency, qty, revenue, sku, description in self.session.execute(
                select(sums, latest(line.sku), latest(line.description)))]
        per_currency = {}
        for product in products:
            per_currency[product["currency"]] = per_currency.get(product["currency"], ZERO) + product["revenue"]
        rows = [{"product_id": product["product_id"], "sku": product["sku"], "description": product["description"],
                 "currency": product["currency"], "quantity": quantity(product["quantity"]),
                 "revenue": money(product["revenue"]),
                 "share": percent(product["revenue"], per_currency[product["currency"]])}
                for product in sorted(products, key=lambda product: (
                    -product["revenue"], product["currency"], periods.sort_key(product["product_id"])))]
        return {"from": date_from.isoformat(), "to": date_to.isoformat(), "rows": rows}

    # --- 5. sales-top-customers --------------------------------------------

    def sales_top_customers(self, filters=None):
        filters = load(TopCustomersFilters, filters or {})
        date_from, date_to = self._range(filters)
        revenue = func.sum(OrderFact.total)
        statement = self._orders(
            (OrderFact.customer_id, OrderFact.currency, func.count(), revenue, func.sum(OrderFact.paid_amount)),
            filters, date_from, date_to,
        ).group_by(OrderFact.customer_id, OrderFact.currency).order_by(
            revenue.desc(), OrderFact.currency, OrderFact.customer_id).limit(filters["limit"])
        # PostgreSQL underestimates the number of customers and hashes them all (200+ ms at
        # 250,000 orders); walking ix_order_facts_customer, already in customer order, takes half.
        with self._planner_setting("enable_hashagg", "off"):
            found = self.session.execute(statement).all()
        names = dict(self.session.execute(
            select(CustomerFact.customer_id, CustomerFact.name)
            .where(CustomerFact.customer_id.in_({row[0] for row in found}))).all()) if found else {}
        rows = [{"customer_id": customer_id, "name": names.get(customer_id), "currency": currency,
                 "orders": orders, "revenue": money(total), "paid": money(paid)}
                for customer_id, currency, orders, total, paid in found]
        return {"from": date_from.isoformat(), "to": date_to.isoformat(), "rows": rows}

    # --- 6. sales-funnel ---------------------------------------------------

    def sales_funnel(self, filters=None):
        """From the funnel rollups (reporting.rollups), kept from opportunity_facts and
        stage_change_facts: per pipeline x creation day x owner x team, a few thousand rows a year."""
        filters = load(FunnelFilters, filters or {})
        date_from, date_to = self._range(filters)
        pipeline = str(filters["pipeline"])
        cohort_rollup = FunnelCohortRollup
        time_rollup = FunnelStageTimeRollup

        def cohort(*columns):
            # The cohort: opportunities of the pipeline created from..to (UTC days), as the caller sees them.
            statement = select(*columns).where(
                cohort_rollup.pipeline_id == pipeline,
                cohort_rollup.created_on >= date_from, cohort_rollup.created_on <= date_to)
            return self._scope(statement, cohort_rollup, filters)

        # One pass over the cohort's rollup rows gives the three breakdowns: by status, by how far
        # forward each opportunity got (furthest_position, kept by ingest: it has entered every
        # open or won stage up to there, even those it skipped), and the lost ones by the lost
        # stage they are in.
        by_status, reached, entered_lost = {}, {}, {}
        for status, furthest, lost_stage, count, cycle_seconds, closed in self.session.execute(cohort(
                cohort_rollup.status, cohort_rollup.furthest_position, cohort_rollup.lost_stage,
                func.sum(cohort_rollup.opportunities), func.sum(cohort_rollup.cycle_seconds),
                func.sum(cohort_rollup.closed))
                .group_by(cohort_rollup.status, cohort_rollup.furthest_position, cohort_rollup.lost_stage)):
            if not count:
                continue  # every opportunity of these rollup rows moved away
            total = by_status.get(status, (0, 0, 0))
            by_status[status] = (total[0] + count, total[1] + (cycle_seconds or 0), total[2] + (closed or 0))
            position = None if furthest == NO_POSITION else furthest
            reached[position] = reached.get(position, 0) + count
            if status == "lost":
                entered_lost[lost_stage] = entered_lost.get(lost_stage, 0) + count
        won = by_status.get("won", (0, None, 0))
        lost = by_status.get("lost", (0, None, 0))

        # The pipeline's stages as its stage changes have seen them (an unknown position is -1 there).
        stages = [(stage, None if position == NO_POSITION else position, outcome)
                  for stage, position, outcome in self.session.execute(
                      select(PipelineStageRollup.to_stage, PipelineStageRollup.to_stage_position,
                             PipelineStageRollup.to_outcome)
                      .where(PipelineStageRollup.pipeline_id == pipeline, PipelineStageRollup.changes > 0))]
        stages.sort(key=lambda stage: (stage[1] is None, stage[1] or 0, stage[0]))

        # Time spent in each stage, from the cohort's changes out of it.
        time_in_statement = self._scope(
            select(time_rollup.from_stage, func.sum(time_rollup.seconds), func.sum(time_rollup.changes))
            .where(time_rollup.pipeline_id == pipeline,
                   time_rollup.created_on >= date_from, time_rollup.created_on <= date_to),
            time_rollup, filters).group_by(time_rollup.from_stage)
        time_in = {stage: (seconds, count) for stage, seconds, count in self.session.execute(time_in_statement)}

        def entered(stage, position, outcome):
            if outcome == "lost":
                return entered_lost.get(stage, 0)
            if position is None:
                return 0
            return sum(count for reached_position, count in reached.items()
                       if reached_position is not None and reached_position >= position)

        rows = [{"stage": stage, "position": position, "outcome": outcome,
                 "entered": entered(stage, position, outcome)} for stage, position, outcome in stages]
        forward = [row for row in rows if row["outcome"] in ("open", "won")]
        for row in rows:
            row["conversion_rate"] = None
            if row["outcome"] == "open":
                later = [other for other in forward
                         if other["position"] is not None and row["position"] is not None
                         and other["position"] > row["position"]]
                if later:
                    row["conversion_rate"] = percent(later[0]["entered"], row["entered"])
            seconds, count = time_in.get(row["stage"], (None, 0))
            row["average_days_in_stage"] = days(seconds, count)

        return {
            "pipeline": pipeline, "from": date_from.isoformat(), "to": date_to.isoformat(),
            "opportunities": sum(count for count, _, _ in by_status.values()),
            "open": by_status.get("open", (0, None, 0))[0],
            "won": won[0],
            "lost": lost[0],
            "win_rate": percent(won[0], won[0] + lost[0]),
            "average_sales_cycle_days": days(won[1], won[2]),
            "stages": rows,
        }

    # --- 7. sales-forecast -------------------------------------------------

    def sales_forecast(self, filters=None):
        filters = load(ForecastFilters, filters or {})
        date_from, date_to = self._range(filters, forward=True)
        opportunity = OpportunityFact
        # ix_opportunity_facts_status_close.
        statement = select(
            opportunity.expected_close_date, opportunity.owner_id, opportunity.currency, func.count(),
            func.sum(opportunity.amount), func.sum(opportunity.amount * opportunity.probability),
        ).where(opportunity.status == "open", or_(
            and_(opportunity.expected_close_date >= date_from, opportunity.expected_close_date <= date_to),
            opportunity.expected_close_date.is_(None)))
        statement = self._scope(statement, opportunity, filters)
        if "pipeline" in filters:
            statement = statement.where(opportunity.pipeline_id == str(filters["pipeline"]))
        statement = statement.group_by(opportunity.expected_close_date, opportunity.owner_id, opportunity.currency)
        by_owner, by_month = {}, {}
        for close_date, owner_id, currency, count, amount, weighted in self.session.execute(statement):
            month = periods.month_label(close_date)
            for table, key in ((by_owner, (month, owner_id, currency)), (by_month, (month, currency))):
                figures = table.setdefault(key, [0, ZERO, ZERO])
                figures[0] += count
                figures[1] += decimal(amount)
                figures[2] += decimal(weighted)

        def forecast(figures):
            # Weighted sums stay exact until here: amount x probability, divided once.
            return {"opportunities": figures[0], "amount": money(figures[1]),
                    "weighted_amount": money(figures[2] / 100)}

        def month_order(month):
            # Opportunities without a date come after every month.
            return (month is None, month or "")

        return {
            "from": date_from.isoformat(), "to": date_to.isoformat(),
            "rows": [{"month": month, "owner_id": owner_id, "currency": currency, **forecast(figures)}
                     for (month, owner_id, currency), figures in sorted(by_owner.items(), key=lambda item: (
                         month_order(item[0][0]), periods.sort_key(item[0][1]), item[0][2]))],
            "by_month": [{"month": month, "currency": currency, **forecast(figures)}
                         for (month, currency), figures in sorted(by_month.items(), key=lambda item: (
                             month_order(item[0][0]), item[0][1]))],
        }

    # --- 8. activities -----------------------------------------------------

    def activities(self, filters=None):
        filters = load(ActivitiesFilters, filters or {})
        granularity = filters["granularity"]
        date_from, date_to = self._range(filters, granularity)
        followup = FollowupFact
        # ix_followup_facts_occurred_on.
        start = period_start_sql(self.session, followup.occurred_on, granularity)
        statement = select(start, followup.logged_by, followup.type, func.count()).where(
            followup.occurred_on >= date_from, followup.occurred_on <= date_to)
        # Periods x people x types make thousands of rows a year: the database sorts them by period
        # and person, and each person's types fold into one row (a fifth of the rows to send).
        statement = self._scope(statement, followup, filters).group_by(
            start, followup.logged_by, followup.type).order_by(start, followup.logged_by.nulls_first(), followup.type)
        followups = []
        for (day, user_id), counts in groupby(self.session.execute(statement), key=lambda row: (row[0], row[1])):
            by_type = {kind: count for _, _, kind, count in counts}
            followups.append({"period": periods.period_label(day, granularity), "period_start": day.isoformat(),
                              "user_id": user_id, "total": sum(by_type.values()), "by_type": by_type})

        # Inactive: no follow-up (or, without any, no creation) in the last ``days`` days. ingest keeps
        # that moment on customer_facts (last_contact_at): the oldest come off ix_customer_facts_last_contact.
        quiet = self._scope(select(CustomerFact.customer_id).where(
            CustomerFact.deleted.is_(False),
            CustomerFact.last_contact_at < self.now - timedelta(days=filters["days"])), CustomerFact, filters)
        count = self.session.execute(select(func.count()).select_from(quiet.subquery())).scalar_one()
        first = quiet.add_columns(CustomerFact.name, CustomerFact.owner_id, CustomerFact.last_contact_at).order_by(
            CustomerFact.last_contact_at, CustomerFact.customer_id).limit(MAX_ITEMS).subquery()
        items = self.session.execute(
            select(first.c.customer_id, first.c.name, first.c.owner_id, CustomerLastFollowup.last_followup_at)
            .outerjoin(CustomerLastFollowup, CustomerLastFollowup.customer_id == first.c.customer_id)
            .order_by(first.c.last_contact_at, first.c.customer_id)).all() if count else []
        return {
            "from": date_from.isoformat(), "to": date_to.isoformat(), "granularity": granularity,
            "followups": followups,
            "inactive_customers": {
                "days": filters["days"], "count": count,
                "items": [{"customer_id": customer_id, "name": name, "owner_id": owner_id,
                           "last_followup_at": _iso(last_followup_at)}
                          for customer_id, name, owner_id, last_followup_at in items],
            },
        }

    # --- 9. contracts ------------------------------------------------------

    def contracts(self, filters=None):
        filters = load(ContractsFilters, filters or {})
        contract = ContractFact

        def scoped(*columns):
            return self._scope(select(*columns), contract, filters)

        # ix_contract_facts_status_end.
        active = (contract.status.in_(ACTIVE_CONTRACT_STATUSES), contract.end_date >= self.today)
        active_value = self.session.execute(
            scoped(contract.currency, func.count(), func.sum(contract.value)).where(*active)
            .group_by(contract.currency)).all()
        horizon = self.today + timedelta(days=filters["days"])
        expiring = scoped(contract.contract_id, contract.title, contract.customer_id, contract.owner_id,
                          contract.end_date, contract.value, contract.currency, contract.status).where(
            *active, contract.end_date <= horizon)
        items = self.session.execute(
            expiring.add_columns(func.count().over().label("total"))
            .order_by(contract.end_date, contract.contract_id).limit(MAX_ITEMS)).all()
        expiring_count = items[0].total if items else 0
        by_status = self.session.execute(
            scoped(contract.status, contract.currency, func.count(), func.sum(contract.value))
            .group_by(contract.status, contract.currency).order_by(contract.status, contract.currency)).all()
        return {
            "as_of": self.today.isoformat(),
            "active": {
                "count": sum(count for _, count, _ in active_value),
                "value": [{"currency": currency, "value": money(value)}
                          for currency, _, value in sorted(active_value)],
            },
            "expiring": {
                "days": filters["days"], "count": expiring_count,
                "items": [{"contract_id": contract_id, "title": title, "customer_id": customer_id,
                           "owner_id": owner_id, "end_date": end_date.isoformat(), "value": money(value),
                           "currency": currency, "status": status}
                          for contract_id, title, customer_id, owner_id, end_date, value, currency, status, _
                          in items],
            },
            "by_status": [{"status": status, "currency": currency, "count": count, "value": money(value)}
                          for status, currency, count, value in by_status],
        }


def _sales_figures(orders, revenue, paid):
    return {
        "orders": orders,
        "revenue": money(revenue),
        "paid": money(paid),
        "outstanding": money(revenue - paid),
        "average_order_value": money(revenue / orders) if orders else None,
    }


def _iso(moment):
    return None if moment is None else moment.astimezone(timezone.utc).isoformat()
