"""What reporting copies from sales when it rebuilds or checks its read models (issue 6).

Every record comes out exactly as the events carry it (the same serialisers),
so a read model rebuilt from these pages equals one built from the events.
Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
from decimal import Decimal

from sqlalchemy import String, func, literal_column, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from crm_common.feeds import RecordFeed
from crm_common.pagination import feed_page

from sales import contracts, orders, pipeline
from sales.documents import wire_money
from sales.models import Contract, Opportunity, OpportunityStageChange, Order, PipelineStage

# Placed orders: confirmed and not cancelled (the shared definition of "counted").
COUNTED_STATUSES = ("confirmed", "paid", "fulfilled")
KINDS = ("orders", "opportunities", "stage_changes", "contracts")


class utc_month(FunctionElement):
    """"YYYY-MM" of a UTC timestamp column, in SQL, on both databases we run on."""
    type = String()
    inherit_cache = True


@compiles(utc_month)
def _utc_month_sqlite(element, compiler, **kw):
    # SQLite keeps UtcDateTime values as UTC text; strftime reads them.
    return compiler.process(func.strftime(literal_column("'%Y-%m'"), *element.clauses.clauses), **kw)


@compiles(utc_month, "postgresql")
def _utc_month_postgresql(element, compiler, **kw):
    # timezone('UTC', ...) makes the month independent of the session's TimeZone setting.
    # Literals, not bound parameters: PostgreSQL matches the SELECT expression with the GROUP BY one
    # only when they are the same text.
    utc = func.timezone(literal_column("'UTC'"), *element.clauses.clauses)
    return compiler.process(func.to_char(utc, literal_column("'YYYY-MM'")), **kw)


class SalesFeed(RecordFeed):
    """Reporting's view of sales: every record, whoever owns it. Admins and the system only."""

    kinds = KINDS

    def totals(self):
        """What reporting's figures must add up to: placed orders, and their revenue by UTC month of
        confirmation and currency."""
        self.require_admin()
        month = utc_month(Order.confirmed_at)
        rows = self.session.execute(
            select(month, Order.currency, func.count(), func.sum(Order.total))
            .where(Order.status.in_(COUNTED_STATUSES))
            .group_by(month, Order.currency).order_by(month, Order.currency)).all()
        return {
            "orders": sum(count for _, _, count, _ in rows),
            "revenue_by_month": [{"month": month_label, "currency": currency, "orders": count,
                                  "revenue": wire_money(Decimal(revenue))}
                                 for month_label, currency, count, revenue in rows],
        }

    # --- the kinds -------------------------------------------------------

    def _orders(self, cursor, limit):
        rows, next_cursor = feed_page(self.session, select(Order), Order.id, limit, cursor)
        return {"items": [orders.order_data(row) for row in rows], "next_cursor": next_cursor}

    def _opportunities(self, cursor, limit):
        rows, next_cursor = feed_page(self.session, select(Opportunity), Opportunity.id, limit, cursor)
        stages = self._stages({row.stage_id for row in rows})
        return {"items": [pipeline.event_data(row, stages[row.stage_id]) for row in rows],
                "next_cursor": next_cursor}

    def _stage_changes(self, cursor, limit):
        rows, next_cursor = feed_page(self.session, select(OpportunityStageChange), OpportunityStageChange.id,
                                      limit, cursor)
        opportunities = {opportunity.id: opportunity for opportunity in self.session.execute(
            select(Opportunity).where(Opportunity.id.in_({row.opportunity_id for row in rows}))).scalars()}
        stages = self._stages({row.to_stage_id for row in rows} | {row.from_stage_id for row in rows} - {None})
        items = [pipeline.stage_change_data(row, opportunities[row.opportunity_id], stages.get(row.from_stage_id),
                                            stages[row.to_stage_id]) for row in rows]
        return {"items": items, "next_cursor": next_cursor}

    def _contracts(self, cursor, limit):
        rows, next_cursor = feed_page(self.session, select(Contract), Contract.id, limit, cursor)
        return {"items": [contracts.event_data(row) for row in rows], "next_cursor": next_cursor}

    # --- internals -------------------------------------------------------

    def _stages(self, stage_ids):
        if not stage_ids:
            return {}
        return {stage.id: stage for stage in self.session.execute(
            select(PipelineStage).where(PipelineStage.id.in_(stage_ids))).scalars()}
