"""What the quote, order and catalogue tests set up: customers in the replica, products, events."""
import json
import uuid
from decimal import Decimal

from sqlalchemy import select

from crm_common.context import RequestContext
from crm_common.outbox import outbox_table
from crm_common.testing_cast import ALICE

from sales.catalogue import Products
from sales.models import CustomerReplica

AS_ADMIN = RequestContext(request_id="r-admin", user_id="00000000-0000-4000-8000-0000000000ad", role="admin")


def known_customer(session, owner_id=ALICE, owner_team_id="east", deleted=False):
    """A customer as the replica knows it from the customers service's events; its id."""
    customer_id = str(uuid.uuid4())
    session.add(CustomerReplica(id=customer_id, name="Acme Ltd", owner_id=owner_id, owner_team_id=owner_team_id,
                                deleted=deleted, version=1))
    session.flush()
    return customer_id


def product(session, sku=None, list_price="100.00", currency="CNY", tax_rate="13", **fields):
    """A product in the catalogue (created by an admin); its dict."""
    return Products(session, AS_ADMIN).create({
        "sku": sku or f"SKU-{uuid.uuid4().hex[:8]}", "name": fields.pop("name", "Widget"),
        "list_price": list_price, "currency": currency, "tax_rate": tax_rate, **fields})


def events(session, event_type=None):
    rows = session.execute(select(outbox_table.c.payload).order_by(outbox_table.c.id)).scalars()
    found = [json.loads(row) for row in rows]
    return [event for event in found if event_type is None or event["type"] == event_type]


def money(text):
    return Decimal(text)
