"""Products and price lists: what can be sold, and at which price to whom.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
Everyone signed in reads the catalogue; admins and managers change it.
Products are deactivated, never deleted: quotes and orders keep pointing at them.
"""
from sqlalchemy import delete, func, or_, select, true
from sqlalchemy.exc import IntegrityError

from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from crm_common.pagination import keyset_page
from crm_common.types import utcnow
from crm_common.validation import load
from crm_common.versioning import check_version, flush_versioned

from sales.catalogue_schemas import (
    PriceListCreate, PriceListItemOut, PriceListOut, PriceListUpdate, ProductCreate, ProductFilters, ProductOut,
    ProductUpdate,
)
from sales.domain import find_active_customer
from sales.models import PriceList, PriceListCustomer, PriceListItem, Product

CATALOGUE_WRITERS = ("admin", "manager", "system")

product_out = ProductOut()
price_list_out = PriceListOut()
price_list_item_out = PriceListItemOut()


def like_pattern(text):
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.casefold()}%"


class Catalogue:
    """Base of products and price lists: one caller's rights on the catalogue."""

    def __init__(self, session, context):
        self.session = session
        self.context = context

    def require_writer(self):
        if self.context.role not in CATALOGUE_WRITERS:
            raise Forbidden("Only admins and managers change products and price lists.")

    def flush_unique(self, conflict, versioned=None):
        """Flush (under the version check when ``versioned`` names the record); a unique
        constraint broken by a request running at the same moment is ``conflict`` (409)."""
        try:
            if versioned:
                flush_versioned(self.session, versioned)
            else:
                self.session.flush()
        except IntegrityError:
            raise conflict


class Products(Catalogue):

    def get(self, product_id):
        return product_out.dump(self.find(product_id))

    def find(self, product_id):
        product = self.session.get(Product, str(product_id))
        if product is None:
            raise NotFound(f"Product {product_id} was not found.")
        return product

    def list(self, filters=None, limit=None, cursor=None):
        filters = load(ProductFilters, filters or {})
        statement = select(Product)
        for term in (filters.get("q") or "").split():
            pattern = like_pattern(term)
            # lower() on both sides: SKUs and names are matched whatever their case.
            statement = statement.where(or_(func.lower(Product.sku).like(pattern, escape="\\"),
                                            func.lower(Product.name).like(pattern, escape="\\")))
        if "active" in filters:
            statement = statement.where(Product.active.is_(filters["active"]))
        rows, next_cursor = keyset_page(self.session, statement, Product.sku, Product.id, False, limit, cursor)
        return {"items": [product_out.dump(row) for row in rows], "next_cursor": next_cursor}

    def create(self, data):
        self.require_writer()
        data = load(ProductCreate, data)
        self._refuse_taken_sku(data["sku"])
        now = utcnow()
        product = Product(**data, created_at=now, updated_at=now)
        self.session.add(product)
        self.flush_unique(_sku_taken(data["sku"]))
        return product_out.dump(product)

    def update(self, product_id, changes, expected_version=None):
        self.require_writer()
        changes = load(ProductUpdate, changes)
        product = self.find(product_id)
        check_version(product, expected_version, f"Product {product_id}")
        if "sku" in changes and changes["sku"] != product.sku:
            self._refuse_taken_sku(changes["sku"])
        changes = {field: value for field, value in changes.items() if getattr(product, field) != value}
        if not changes:
            return product_out.dump(product)
        for field, value in changes.items():
            setattr(product, field, value)
        product.updated_at = utcnow()
        self.flush_unique(_sku_taken(product.sku), versioned=f"Product {product_id}")
        return product_out.dump(product)

    def _refuse_taken_sku(self, sku):
        if self.session.execute(select(Product.id).where(Product.sku == sku)).first():
            raise _sku_taken(sku)


class PriceLists(Catalogue):

    def get(self, price_list_id):
        return self.to_dict(self._find(price_list_id))

    def list(self, limit=None, cursor=None):
        rows, next_cursor = keyset_page(self.session, select(PriceList), PriceList.name, PriceList.id,
                                        False, limit, cursor)
        return {"items": [self.to_dict(row) for row in rows], "next_cursor": next_cursor}

    def create(self, data):
        self.require_writer()
        data = load(PriceListCreate, data)
        self._refuse_taken_name(data["name"])
        self._check(data, price_list_id=None)
        now = utcnow()
        price_list = PriceList(name=data["name"], currency=data["currency"], active=data["active"],
                               created_at=now, updated_at=now)
        self.session.add(price_list)
        self.flush_unique(_name_taken(data["name"]))
        self._replace(price_list, data)
        return self.to_dict(price_list)

    def update(self, price_list_id, changes, expected_version=None):
        """Change a list; items and customer_ids, when given, replace what the list had."""
        self.require_writer()
        changes = load(PriceListUpdate, changes)
        price_list = self._find(price_list_id)
        check_version(price_list, expected_version, f"Price list {price_list_id}")
        if "name" in changes and changes["name"] != price_list.name:
            self._refuse_taken_name(changes["name"])
        self._check(changes, price_list.id)
        # Items and customers first: their statements flush, and the list's own row
        # must be written once (one change, one version).
        self._replace(price_list, changes)
        for field in ("name", "currency", "active"):
            if field in changes:
                setattr(price_list, field, changes[field])
        # Items and customers are rows of their own: the list's version moves with any change.
        price_list.updated_at = utcnow()
        self.flush_unique(_name_taken(price_list.name), versioned=f"Price list {price_list_id}")
        return self.to_dict(price_list)

    def to_dict(self, price_list):
        items = self.session.execute(select(PriceListItem).where(PriceListItem.price_list_id == price_list.id)
                                     .order_by(PriceListItem.product_id, PriceListItem.valid_from)).scalars()
        customers = self.session.execute(select(PriceListCustomer.customer_id).where(
            PriceListCustomer.price_list_id == price_list.id).order_by(PriceListCustomer.customer_id)).scalars()
        return {**price_list_out.dump(price_list), "items": [price_list_item_out.dump(item) for item in items],
                "customer_ids": list(customers)}

    def _find(self, price_list_id):
        price_list = self.session.get(PriceList, str(price_list_id))
        if price_list is None:
            raise NotFound(f"Price list {price_list_id} was not found.")
        return price_list

    def _check(self, data, price_list_id):
        """Refuse bad items and customers before anything is written."""
        errors = {}
        periods = {}
        for index, item in enumerate(data.get("items", ())):
            if self.session.get(Product, item["product_id"]) is None:
                errors[f"items.{index}.product_id"] = ["There is no product with this id."]
                continue
            for other_from, other_to in periods.get(item["product_id"], ()):
                if _overlap(item["valid_from"], item["valid_to"], other_from, other_to):
                    # Two prices on one day would make the quote's price a coin toss.
                    errors[f"items.{index}.valid_from"] = ["Overlaps another price of this product in the list."]
            periods.setdefault(item["product_id"], []).append((item["valid_from"], item["valid_to"]))
        for index, customer_id in enumerate(data.get("customer_ids", ())):
            if find_active_customer(self.session, customer_id) is None:
                errors[f"customer_ids.{index}"] = ["Unknown or deleted customer."]
        if errors:
            raise ValidationFailed("Some items or customers of the price list are not valid.", errors)
        customer_ids = data.get("customer_ids", ())
        taken = self.session.execute(select(PriceListCustomer.customer_id).where(
            PriceListCustomer.customer_id.in_(customer_ids),
            PriceListCustomer.price_list_id != price_list_id if price_list_id else true())).scalars().first()
        if taken:
            raise _customer_taken(taken)

    def _replace(self, price_list, data):
        if "items" in data:
            self.session.execute(delete(PriceListItem).where(PriceListItem.price_list_id == price_list.id))
            self.session.add_all([PriceListItem(price_list_id=price_list.id, **item) for item in data["items"]])
        if "customer_ids" in data:
            self.session.execute(delete(PriceListCustomer).where(PriceListCustomer.price_list_id == price_list.id))
            self.session.add_all([PriceListCustomer(price_list_id=price_list.id, customer_id=customer_id)
                                  for customer_id in dict.fromkeys(data["customer_ids"])])
        try:
            self.session.flush()
        except IntegrityError:
            # Another list took one of these customers at the same moment.
            raise _customer_taken(None)

    def _refuse_taken_name(self, name):
        if self.session.execute(select(PriceList.id).where(PriceList.name == name)).first():
            raise _name_taken(name)


def _sku_taken(sku):
    # Also what two requests with one SKU at once get: the unique constraint decides.
    return Conflict(f"Another product already has SKU {sku!r}.", {"sku": ["This SKU is taken."]})


def _name_taken(name):
    return Conflict(f"Another price list is named {name!r}.", {"name": ["This name is taken."]})


def _customer_taken(customer_id):
    which = f"Customer {customer_id}" if customer_id else "A customer"
    return Conflict(f"{which} already has another price list; a customer has at most one.",
                    {"customer_ids": ["A customer has at most one price list."]})


def _overlap(from_a, to_a, from_b, to_b):
    return (to_b is None or from_a <= to_b) and (to_a is None or from_b <= to_a)


def price_list_price(session, customer_id, product_id, currency, on_date):
    """The unit price of ``product_id`` for ``customer_id`` on ``on_date`` from the customer's
    active price list in ``currency``; None when there is none."""
    return session.execute(
        select(PriceListItem.unit_price)
        .join(PriceList, PriceList.id == PriceListItem.price_list_id)
        .join(PriceListCustomer, PriceListCustomer.price_list_id == PriceList.id)
        .where(PriceListCustomer.customer_id == customer_id, PriceList.active.is_(True),
               PriceList.currency == currency, PriceListItem.product_id == product_id,
               PriceListItem.valid_from <= on_date,
               or_(PriceListItem.valid_to.is_(None), PriceListItem.valid_to >= on_date))
        .order_by(PriceListItem.valid_from.desc()).limit(1)
    ).scalar_one_or_none()
