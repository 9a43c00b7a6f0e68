"""What reporting copies from customers when it rebuilds or checks its read models (issue 6).

Every record comes out exactly as the events carry it (the same serialisers),
so a read model rebuilt from these pages equals one built from the events.
Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
from collections import defaultdict

from sqlalchemy import func, select

from crm_common.feeds import RecordFeed
from crm_common.pagination import feed_page

from customers.activity import followup_event_data
from customers.domain import to_dict
from customers.models import Customer, Followup

KINDS = ("customers", "followups")


class CustomerFeed(RecordFeed):
    """Reporting's view of customers: every record, whoever owns it. Admins and the system only."""

    kinds = KINDS

    def totals(self):
        """What reporting's customer figures must add up to."""
        self.require_admin()
        count = self.session.execute(select(func.count()).select_from(Customer)
                                     .where(Customer.deleted_at.is_(None))).scalar_one()
        return {"customers": count}

    def _customers(self, cursor, limit):
        # Deleted and merged customers too: reporting must learn that they are gone.
        rows, next_cursor = feed_page(self.session, select(Customer), Customer.id, limit, cursor)
        return {"items": [to_dict(row) for row in rows], "next_cursor": next_cursor}

    def _followups(self, cursor, limit):
        rows, next_cursor = feed_page(self.session, select(Followup), Followup.id, limit, cursor)
        ids = [row.id for row in rows]
        names = {customer_id: name for customer_id, name in self.session.execute(
            select(Customer.id, Customer.name).where(Customer.id.in_({row.customer_id for row in rows})))}
        closed = defaultdict(list)
        if ids:
            for closer_id, closed_id in self.session.execute(
                    select(Followup.closed_by_followup_id, Followup.id)
                    .where(Followup.closed_by_followup_id.in_(ids))
                    .order_by(Followup.occurred_at, Followup.id)):
                closed[closer_id].append(closed_id)
        return {"items": [followup_event_data(row, names.get(row.customer_id), closed[row.id]) for row in rows],
                "next_cursor": next_cursor}

