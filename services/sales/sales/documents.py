"""What quotes and orders share: who may see and change them, their priced lines, their states.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
from decimal import Decimal

from sqlalchemy import select

from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from crm_common.pagination import keyset_page
from crm_common.permissions import visibility
from crm_common.types import utcnow

from sales.catalogue import price_list_price
from sales.domain import require_active_customer, require_visible_customer
from sales.money import MAX_AMOUNT, as_wire
from sales.models import Opportunity, Product
from sales.pricing import document_totals, price_line

PRODUCER = "sales"
WRITER_ROLES = ("admin", "manager", "sales", "system")
CENT = Decimal("0.01")
LINE_FIELDS = ("position", "product_id", "sku", "description", "quantity", "unit_price", "discount_percent",
               "tax_rate", "subtotal", "discount", "tax", "total")


class SalesRecords:
    """Records with an owner and a team (quotes, orders), as one caller may use them."""

    model = None
    noun = None

    def __init__(self, session, context):
        self.session = session
        self.context = context

    def require_writer(self):
        if self.context.role not in WRITER_ROLES:
            raise Forbidden(f"Your role may not change {self.noun}s.")

    def visible(self, statement):
        condition = visibility(self.context, self.model.owner_id, self.model.owner_team_id)
        return statement if condition is None else statement.where(condition)

    def find(self, record_id, lock=False):
        """The record, or NotFound also when the caller may not see it. ``lock``: SELECT ... FOR UPDATE,
        so concurrent changes of one record run one after the other (PostgreSQL; SQLite has one writer)."""
        statement = self.visible(select(self.model).where(self.model.id == str(record_id)))
        if lock:
            statement = statement.with_for_update()
        record = self.session.execute(statement).scalar_one_or_none()
        if record is None:
            raise NotFound(f"{self.noun.capitalize()} {record_id} was not found.")
        return record

    def page(self, statement, filters, limit, cursor):
        """A newest-first page of the visible records matching ``filters`` (equality on columns)."""
        statement = self.visible(statement)
        for field, value in filters.items():
            statement = statement.where(getattr(self.model, field) == value)
        return keyset_page(self.session, statement, self.model.created_at, self.model.id, True, limit, cursor)

    def owner(self, owner_id, owner_team_id):
        """(owner id, owner team id) of a new record: the caller unless they name someone."""
        owner_id = str(owner_id) if owner_id else self.context.user_id
        if self.context.role == "sales" and owner_id != self.context.user_id:
            raise ValidationFailed(f"Sales users own the {self.noun}s they create.",
                                   {"owner_id": ["You may not give records to another user."]})
        return owner_id, owner_team_id if owner_team_id is not None else self.context.team_id

    def new_document(self, data, owner_team_id, line_model):
        """The columns of a new quote or order from its validated ``data``: owner, customer,
        priced lines and totals (the caller adds its status and own fields)."""
        self.require_writer()
        owner_id, owner_team_id = self.owner(data["owner_id"], owner_team_id)
        require_visible_customer(self.session, self.context, data["customer_id"])
        self.check_opportunity(data["opportunity_id"], data["customer_id"])
        now = utcnow()
        currency, lines, totals = priced_lines(self.session, data["customer_id"], data.get("currency"),
                                               data["lines"], now.date(), line_model)
        return dict(customer_id=data["customer_id"], opportunity_id=data["opportunity_id"], owner_id=owner_id,
                    owner_team_id=owner_team_id, currency=currency, notes=data["notes"], lines=lines,
                    subtotal=totals.subtotal, discount_total=totals.discount_total, tax_total=totals.tax_total,
                    total=totals.total, created_by=self.context.user_id, created_at=now, updated_at=now)

    def check_opportunity(self, opportunity_id, customer_id):
        if opportunity_id is None:
            return
        # An opportunity the caller may not see is answered like a missing one.
        statement = select(Opportunity.customer_id).where(Opportunity.id == opportunity_id)
        condition = visibility(self.context, Opportunity.owner_id, Opportunity.owner_team_id)
        found = self.session.execute(
            statement if condition is None else statement.where(condition)).scalar_one_or_none()
        if found is None:
            raise ValidationFailed("Unknown opportunity.",
                                   {"opportunity_id": ["There is no opportunity with this id."]})
        if found != customer_id:
            raise ValidationFailed("The opportunity is another customer's.",
                                   {"opportunity_id": ["The opportunity must be of the same customer."]})


def require_status(status, allowed, action, what):
    """Conflict (409) naming the current ``status`` unless it is one of ``allowed``."""
    if status not in allowed:
        raise Conflict(f"{what} is {status}; only a {' or '.join(allowed)} one can be {action}.",
                       extra={"current_status": status})


def priced_lines(session, customer_id, currency, lines, on_date, line_model):
    """Validate and price ``lines`` of a document for ``customer_id``: (currency, [line_model], Totals).

    A product line takes what it does not say from the catalogue: description,
    tax rate, and the unit price valid on ``on_date`` from the customer's price
    list in the document's currency, else the product's list price when the
    product is in that currency. One currency per document: a product in
    another currency with no such price is refused naming the line.
    """
    require_active_customer(session, customer_id)
    products = _products(session, lines)
    if currency is None:
        first = products.get(lines[0].get("product_id"))
        if first is None:
            raise ValidationFailed("Say the currency.", {"currency": ["Required when the first line has no product."]})
        currency = first.currency
    errors, built = {}, []
    for index, line in enumerate(lines):
        product = products.get(line.get("product_id"))
        if line.get("product_id") is not None and (product is None or not product.active):
            errors[f"lines.{index}.product_id"] = ["There is no active product with this id."]
            continue
        unit_price = line.get("unit_price")
        if unit_price is None:
            unit_price = price_list_price(session, customer_id, product.id, currency, on_date)
        if unit_price is None:
            if product.currency != currency:
                errors[f"lines.{index}.product_id"] = [
                    f"The product is priced in {product.currency} and has no {currency} price for this "
                    "customer; give the unit_price."]
                continue
            unit_price = product.list_price
        tax_rate = line.get("tax_rate")
        if tax_rate is None:
            tax_rate = product.tax_rate if product is not None else 0
        amounts = price_line(line["quantity"], unit_price, line["discount_percent"], tax_rate, currency)
        built.append(line_model(
            position=index + 1, product_id=product.id if product else None, sku=product.sku if product else None,
            description=line.get("description") or product.name, quantity=line["quantity"],
            unit_price=unit_price, discount_percent=line["discount_percent"], tax_rate=tax_rate,
            subtotal=amounts.subtotal, discount=amounts.discount, tax=amounts.tax, total=amounts.total))
    if errors:
        raise ValidationFailed("Some lines are not valid.", errors)
    totals = document_totals(built)
    if max(totals.subtotal, totals.total) > MAX_AMOUNT:
        raise ValidationFailed("The document is too large.", {"lines": [f"The total must be at most {MAX_AMOUNT}."]})
    return currency, built, totals


def copy_lines(lines, line_model):
    """The same lines for another document (an order from a quote)."""
    return [line_model(**{field: getattr(line, field) for field in LINE_FIELDS}) for line in lines]


def set_totals(document, totals):
    document.subtotal, document.discount_total = totals.subtotal, totals.discount_total
    document.tax_total, document.total = totals.tax_total, totals.total


def touch(document):
    document.updated_at = utcnow()


def wire_money(amount):
    """An amount as events and responses write it: always two decimals ("63.00"), whatever it was typed as."""
    return None if amount is None else as_wire(Decimal(amount).quantize(CENT))


def event_data(document, **extra):
    """What every sales document event carries: reporting (issue 6) aggregates from these.

    ``version`` is the document's version after the change the event reports (callers flush first),
    so a consumer can drop an older snapshot arriving after a newer one."""
    return {
        "id": document.id,
        "customer_id": document.customer_id,
        "opportunity_id": document.opportunity_id,
        "owner_id": document.owner_id,
        "owner_team_id": document.owner_team_id,
        "status": document.status,
        "currency": document.currency,
        "subtotal": wire_money(document.subtotal),
        "discount_total": wire_money(document.discount_total),
        "tax_total": wire_money(document.tax_total),
        "total": wire_money(document.total),
        "created_at": document.created_at.isoformat(),
        "version": document.version,
        **extra,
    }


def lines_data(lines):
    return [{"position": line.position, "product_id": line.product_id, "sku": line.sku,
             "description": line.description, "quantity": format(Decimal(line.quantity).normalize(), "f"),
             "unit_price": wire_money(line.unit_price), "subtotal": wire_money(line.subtotal),
             "discount": wire_money(line.discount), "tax": wire_money(line.tax), "total": wire_money(line.total)}
            for line in lines]


def _products(session, lines):
    ids = {line["product_id"] for line in lines if line.get("product_id") is not None}
    if not ids:
        return {}
    return {product.id: product for product in session.execute(select(Product).where(Product.id.in_(ids))).scalars()}
