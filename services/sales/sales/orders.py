"""Orders and their payments: each sale recorded exactly once, and never paid beyond its total.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.

States: draft -> confirmed -> paid -> fulfilled, or cancelled (with a reason)
from draft or confirmed. An order moves to paid when payments reach its
total; fulfilment follows payment. An order that has received any payment
is not cancelled: the money would have to go back first, and refunds are
not part of this service yet, so cancelling a partly paid order is refused
(409) rather than leaving money recorded against a cancelled sale.

Payments lock the order row (SELECT ... FOR UPDATE) before reading what is
outstanding, so two payments at once are applied one after the other and
the second sees what the first paid: an order is never overpaid.
"""
from sqlalchemy import select

from crm_common.errors import Conflict, ValidationFailed
from crm_common.metrics import count_after_commit
from crm_common.outbox import record_event
from crm_common.types import utcnow
from crm_common.validation import load
from crm_common.versioning import flush_versioned

from sales.documents import (
    PRODUCER, SalesRecords, copy_lines, event_data, lines_data, require_status, touch, wire_money,
)
from sales.domain import require_active_customer
from sales.metrics import ORDER_REVENUE, ORDERS_PLACED, PAYMENT_AMOUNT, PAYMENTS_RECEIVED
from sales.models import Order, OrderLine, Payment
from sales.money import ZERO, minor_unit, round_money
from sales.order_schemas import OrderCreate, OrderFilters, OrderOut, PaymentCreate, PaymentOut, ReasonIn
from sales.pricing import outstanding, payment_status

order_out = OrderOut()
payment_out = PaymentOut()


def to_dict(order):
    return {**order_out.dump(order),
            "outstanding": wire_money(outstanding(order.total, order.paid_amount)),
            "payment_status": payment_status(order.total, order.paid_amount)}


def order_data(order, **extra):
    """The whole order as every order event and reporting's rebuild pages carry it, plus the event's
    ``extra`` fields: a consumer that missed an event is put right by the next one."""
    return {**event_data(order, paid_amount=wire_money(order.paid_amount),
                         confirmed_at=order.confirmed_at.isoformat() if order.confirmed_at else None,
                         lines=lines_data(order.lines)),
            **extra}


class Orders(SalesRecords):
    model = Order
    noun = "order"

    # --- reading ---------------------------------------------------------

    def get(self, order_id):
        return to_dict(self.find(order_id))

    def list(self, filters=None, limit=None, cursor=None):
        filters = load(OrderFilters, filters or {})
        rows, next_cursor = self.page(select(Order), filters, limit, cursor)
        return {"items": [to_dict(row) for row in rows], "next_cursor": next_cursor}

    def payments(self, order_id):
        order = self.find(order_id)
        rows = self.session.execute(select(Payment).where(Payment.order_id == order.id)
                                    .order_by(Payment.created_at, Payment.id)).scalars()
        return {"items": [payment_out.dump(row) for row in rows]}

    # --- changing --------------------------------------------------------

    def create(self, data, owner_team_id=None):
        """A draft order entered directly (not from a quote)."""
        order = Order(**self.new_document(load(OrderCreate, data), owner_team_id, OrderLine), status="draft",
                      paid_amount=ZERO)
        self.session.add(order)
        self.session.flush()
        return to_dict(order)

    def place_from_quote(self, quote):
        """The confirmed order of an accepted quote (the caller has checked the quote).

        Order.quote_id is unique: a second order of the same quote, even from
        a concurrent accept, fails at the database and nothing is recorded.
        """
        now = utcnow()
        order = Order(customer_id=quote.customer_id, quote_id=quote.id, opportunity_id=quote.opportunity_id,
                      owner_id=quote.owner_id, owner_team_id=quote.owner_team_id, currency=quote.currency,
                      status="confirmed", subtotal=quote.subtotal, discount_total=quote.discount_total,
                      tax_total=quote.tax_total, total=quote.total, paid_amount=ZERO, notes=quote.notes,
                      confirmed_at=now, created_by=self.context.user_id, created_at=now, updated_at=now,
                      lines=copy_lines(quote.lines, OrderLine))
        self.session.add(order)
        self.session.flush()
        self._placed(order)
        return order

    def confirm(self, order_id):
        self.require_writer()
        order = self.find(order_id, lock=True)
        require_status(order.status, ("draft",), "confirmed", f"Order {order_id}")
        require_active_customer(self.session, order.customer_id)
        order.status, order.confirmed_at = "confirmed", utcnow()
        self._save(order)
        self._placed(order)
        return to_dict(order)

    def pay(self, order_id, data):
        """Record a payment; the order is paid when the payments reach its total."""
        self.require_writer()
        data = load(PaymentCreate, data)
        order = self.find(order_id, lock=True)
        require_status(order.status, ("confirmed",), "paid", f"Order {order_id}")
        amount = data["amount"]
        if round_money(amount, order.currency) != amount:
            raise ValidationFailed(f"{order.currency} has {minor_unit(order.currency)} decimals.",
                                   {"amount": ["Too many decimals for this currency."]})
        due = outstanding(order.total, order.paid_amount)
        if amount > due:
            raise ValidationFailed(f"Only {wire_money(due)} {order.currency} is outstanding on order {order.id}.",
                                   {"amount": ["More than the outstanding amount."]})
        payment = Payment(order_id=order.id, amount=amount, paid_at=data["paid_at"], method=data["method"],
                          reference=data["reference"], created_by=self.context.user_id, created_at=utcnow())
        self.session.add(payment)
        order.paid_amount = order.paid_amount + amount
        fully_paid = order.paid_amount >= order.total
        if fully_paid:
            order.status, order.paid_at = "paid", payment.paid_at
        self._save(order)
        record_event(self.session, PRODUCER, "order.paid", order_data(
            order, order_id=order.id, payment_id=payment.id, amount=wire_money(amount), method=payment.method,
            paid_at=payment.paid_at.isoformat(),
            outstanding=wire_money(outstanding(order.total, order.paid_amount)), fully_paid=fully_paid), self.context)
        count_after_commit(self.session, PAYMENTS_RECEIVED.labels(order.currency))
        count_after_commit(self.session, PAYMENT_AMOUNT.labels(order.currency), float(amount))
        return {**payment_out.dump(payment), "order": to_dict(order)}

    def fulfil(self, order_id):
        self.require_writer()
        order = self.find(order_id, lock=True)
        require_status(order.status, ("paid",), "fulfilled", f"Order {order_id}")
        order.status, order.fulfilled_at = "fulfilled", utcnow()
        self._save(order)
        record_event(self.session, PRODUCER, "order.fulfilled", order_data(
            order, fulfilled_at=order.fulfilled_at.isoformat()), self.context)
        return to_dict(order)

    def cancel(self, order_id, data):
        self.require_writer()
        reason = load(ReasonIn, data)["reason"]
        order = self.find(order_id, lock=True)
        require_status(order.status, ("draft", "confirmed"), "cancelled", f"Order {order_id}")
        if order.paid_amount > 0:
            raise Conflict(f"Order {order_id} is partly paid ({wire_money(order.paid_amount)} {order.currency}); "
                           "it cannot be cancelled.", extra={"current_status": order.status})
        was_placed = order.status == "confirmed"
        order.status, order.cancel_reason, order.cancelled_at = "cancelled", reason, utcnow()
        self._save(order)
        record_event(self.session, PRODUCER, "order.cancelled", order_data(
            order, reason=reason, was_placed=was_placed,
            cancelled_at=order.cancelled_at.isoformat()), self.context)
        return to_dict(order)

    # --- internals -------------------------------------------------------

    def _save(self, order):
        touch(order)
        flush_versioned(self.session, f"Order {order.id}")

    def _placed(self, order):
        record_event(self.session, PRODUCER, "order.placed", order_data(order, quote_id=order.quote_id),
                     self.context)
        count_after_commit(self.session, ORDERS_PLACED.labels(order.currency))
        count_after_commit(self.session, ORDER_REVENUE.labels(order.currency), float(order.total))
