"""Quotes: priced offers to a customer, and the order an accepted one becomes.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.

States: draft -> sent -> accepted | rejected | expired. Only a draft is
edited. A sent quote whose valid_until has passed is expired: that is
derived when the quote is read (no timer has to run first), so a quote
cannot be accepted a day late just because nothing marked it.
"""
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError

from crm_common.errors import Conflict, ValidationFailed
from crm_common.outbox import record_event
from crm_common.types import utcnow
from crm_common.validation import load
from crm_common.versioning import check_version, flush_versioned

from sales.documents import PRODUCER, SalesRecords, event_data, priced_lines, require_status, set_totals, touch
from sales.domain import require_active_customer
from sales.models import Order, Quote, QuoteLine
from sales.order_schemas import QuoteCreate, QuoteFilters, QuoteOut, QuoteUpdate, ReasonIn
from sales.orders import Orders
from sales.orders import to_dict as order_dict

quote_out = QuoteOut()


def today():
    return utcnow().date()


def effective_status(quote, on_date=None):
    """The status as users see it: a sent quote past its valid_until is expired."""
    if quote.status == "sent" and quote.valid_until is not None and quote.valid_until < (on_date or today()):
        return "expired"
    return quote.status


class Quotes(SalesRecords):
    model = Quote
    noun = "quote"

    # --- reading ---------------------------------------------------------

    def get(self, quote_id):
        return self.to_dict(self.find(quote_id))

    def list(self, filters=None, limit=None, cursor=None):
        filters = load(QuoteFilters, filters or {})
        statement = select(Quote)
        status = filters.pop("status", None)
        lapsed = and_(Quote.status == "sent", Quote.valid_until < today())
        if status == "expired":
            statement = statement.where(or_(Quote.status == "expired", lapsed))
        elif status == "sent":
            # Not ~lapsed: NOT (valid_until < today) is NULL, not true, for a quote without an end.
            statement = statement.where(Quote.status == "sent",
                                        or_(Quote.valid_until.is_(None), Quote.valid_until >= today()))
        elif status:
            statement = statement.where(Quote.status == status)
        rows, next_cursor = self.page(statement, filters, limit, cursor)
        return {"items": [self.to_dict(row) for row in rows], "next_cursor": next_cursor}

    def to_dict(self, quote):
        order_id = None
        if quote.status == "accepted":
            order_id = self.session.execute(select(Order.id).where(Order.quote_id == quote.id)).scalar_one_or_none()
        return {**quote_out.dump(quote), "status": effective_status(quote), "order_id": order_id}

    # --- changing --------------------------------------------------------

    def create(self, data, owner_team_id=None):
        data = load(QuoteCreate, data)
        quote = Quote(**self.new_document(data, owner_team_id, QuoteLine), status="draft",
                      valid_until=data["valid_until"])
        self.session.add(quote)
        self.session.flush()
        return self.to_dict(quote)

    def update(self, quote_id, changes, expected_version=None):
        """Change a draft; new lines are priced as of today, in the quote's currency."""
        self.require_writer()
        changes = load(QuoteUpdate, changes)
        quote = self.find(quote_id)
        check_version(quote, expected_version, f"Quote {quote_id}")
        require_status(effective_status(quote), ("draft",), "changed", f"Quote {quote_id}")
        if "lines" in changes:
            _, lines, totals = priced_lines(self.session, quote.customer_id, quote.currency, changes["lines"],
                                            today(), QuoteLine)
            quote.lines = lines
            set_totals(quote, totals)
        for field in ("valid_until", "notes"):
            if field in changes:
                setattr(quote, field, changes[field])
        self._save(quote)
        return self.to_dict(quote)

    def send(self, quote_id):
        self.require_writer()
        quote = self.find(quote_id, lock=True)
        require_status(effective_status(quote), ("draft",), "sent", f"Quote {quote_id}")
        if quote.valid_until is not None and quote.valid_until < today():
            raise ValidationFailed("The quote would be expired on arrival.",
                                   {"valid_until": ["Must not be in the past."]})
        quote.status, quote.sent_at = "sent", utcnow()
        self._save(quote)
        self._event("quote.sent", quote, sent_at=quote.sent_at.isoformat(),
                    valid_until=quote.valid_until.isoformat() if quote.valid_until else None)
        return self.to_dict(quote)

    def accept(self, quote_id):
        """Accept a sent quote: the confirmed order it becomes, created exactly once.

        The quote row is locked first, so a second accept waits for the first
        and then finds the quote accepted (409). The unique quote_id of orders
        is the last line of defence should anything get past that.
        """
        self.require_writer()
        quote = self.find(quote_id, lock=True)
        require_status(effective_status(quote), ("sent",), "accepted", f"Quote {quote_id}")
        require_active_customer(self.session, quote.customer_id)
        quote.status, quote.decided_at = "accepted", utcnow()
        self._save(quote)
        try:
            order = Orders(self.session, self.context).place_from_quote(quote)
        except IntegrityError:
            raise Conflict(f"Quote {quote_id} already has an order.", extra={"current_status": "accepted"})
        self._event("quote.accepted", quote, order_id=order.id, decided_at=quote.decided_at.isoformat())
        return order_dict(order)

    def reject(self, quote_id, data):
        self.require_writer()
        reason = load(ReasonIn, data)["reason"]
        quote = self.find(quote_id, lock=True)
        require_status(effective_status(quote), ("sent",), "rejected", f"Quote {quote_id}")
        quote.status, quote.decided_at, quote.rejected_reason = "rejected", utcnow(), reason
        self._save(quote)
        self._event("quote.rejected", quote, reason=reason, decided_at=quote.decided_at.isoformat())
        return self.to_dict(quote)

    # --- internals -------------------------------------------------------

    def _save(self, quote):
        touch(quote)
        flush_versioned(self.session, f"Quote {quote.id}")

    def _event(self, event_type, quote, **extra):
        record_event(self.session, PRODUCER, event_type, event_data(quote, quote_id=quote.id, **extra),
                     self.context)
