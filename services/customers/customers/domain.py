"""Customer records: who may see and change what, and what each change publishes.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
from sqlalchemy import or_, select
from sqlalchemy.orm.exc import StaleDataError

from crm_common.context import RequestContext
from crm_common.errors import Forbidden, NotFound, ValidationFailed, VersionMismatch
from crm_common.outbox import record_event
from crm_common.pagination import check_limit, keyset_page
from crm_common.permissions import visibility
from crm_common.types import utcnow
from crm_common.validation import load

from customers.models import Customer, CustomerTag
from customers.schemas import SORTABLE, CustomerCreate, CustomerFilters, CustomerOut, CustomerUpdate

PRODUCER = "customers"
WRITER_ROLES = ("admin", "manager", "sales", "system")

customer_out = CustomerOut()


def to_dict(customer):
    return customer_out.dump(customer)


def visible_to(context: RequestContext):
    """The SQL condition for the customers this caller may see (None: all)."""
    return visibility(context, Customer.owner_id, Customer.owner_team_id)


class CustomerBook:
    """The customer records as one caller may use them."""

    def __init__(self, session, context: RequestContext):
        self.session = session
        self.context = context

    # --- reading ---------------------------------------------------------

    def get(self, customer_id, include_deleted=False):
        statement = select(Customer).where(Customer.id == str(customer_id))
        condition = visible_to(self.context)
        if condition is not None:
            statement = statement.where(condition)
        customer = self.session.execute(statement).scalar_one_or_none()
        if customer is None or (customer.deleted_at and not include_deleted):
            # Records the caller may not see answer exactly like missing ones.
            raise NotFound(f"Customer {customer_id} was not found.")
        return customer

    def list(self, filters=None, limit=None, cursor=None, sort=None):
        filters = load(CustomerFilters(), filters or {})
        limit = check_limit(limit)
        sort_column, descending = self._sort(sort)
        statement = select(Customer)
        condition = visible_to(self.context)
        if condition is not None:
            statement = statement.where(condition)
        if filters["include_deleted"]:
            if not self.context.is_admin:
                raise Forbidden("Only admins may list deleted customers.")
        else:
            statement = statement.where(Customer.deleted_at.is_(None))
        if "q" in filters:
            pattern = "%" + filters["q"].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            statement = statement.where(or_(Customer.name.ilike(pattern, escape="\\"),
                                            Customer.email.ilike(pattern, escape="\\")))
        for field in ("lifecycle_stage", "tier", "region"):
            if field in filters:
                statement = statement.where(getattr(Customer, field) == filters[field])
        if "owner_id" in filters:
            statement = statement.where(Customer.owner_id == str(filters["owner_id"]))
        if "tag" in filters:
            statement = statement.where(Customer.tag_rows.any(CustomerTag.tag == filters["tag"]))
        rows, next_cursor = keyset_page(self.session, statement, sort_column, Customer.id,
                                        descending, limit, cursor)
        return {"items": [to_dict(row) for row in rows], "next_cursor": next_cursor}

    @staticmethod
    def _sort(sort):
        sort = sort or "-created_at"
        descending = sort.startswith("-")
        name = sort.lstrip("-+")
        if name not in SORTABLE:
            raise ValidationFailed("sort is not valid",
                                   {"sort": [f"Sort by one of: {', '.join(SORTABLE)} (prefix - for descending)."]})
        return getattr(Customer, name), descending

    # --- changing --------------------------------------------------------

    def _require_writer(self):
        if self.context.role not in WRITER_ROLES:
            raise Forbidden("Your role may not change customers.")

    def create(self, data, owner_team_id=None):
        self._require_writer()
        data = load(CustomerCreate(), data)
        owner_id = data.pop("owner_id", None) or self.context.user_id
        if self.context.role == "sales" and owner_id != self.context.user_id:
            raise ValidationFailed("Sales users own the customers they create.",
                                   {"owner_id": ["You may not assign customers to another user."]})
        tags = data.pop("tags", [])
        now = utcnow()
        customer = Customer(
            **data,
            owner_id=owner_id,
            owner_team_id=owner_team_id if owner_team_id is not None else self.context.team_id,
            lifecycle_stage=data.get("lifecycle_stage", "lead"),
            lifecycle_changed_at=now,
            created_by=self.context.user_id,
            created_at=now,
            updated_at=now,
        )
        customer.tag_rows = [CustomerTag(tag=tag) for tag in tags]
        self.session.add(customer)
        self.session.flush()
        snapshot = to_dict(customer)
        record_event(self.session, PRODUCER, "customer.created", snapshot, self.context)
        if owner_id:
            self._record_assignment(customer, previous_owner_id=None)
        return snapshot

    def update(self, customer_id, changes, expected_version=None):
        self._require_writer()
        changes = load(CustomerUpdate(), changes)
        customer = self.get(customer_id)
        if expected_version is not None and customer.version != expected_version:
            raise VersionMismatch(
                f"Customer {customer_id} is at version {customer.version}, not {expected_version}.")
        before = to_dict(customer)
        if "tags" in changes:
            customer.tag_rows = [CustomerTag(tag=tag) for tag in changes.pop("tags")]
        for field, value in changes.items():
            setattr(customer, field, value)
        if "lifecycle_stage" in changes and changes["lifecycle_stage"] != before["lifecycle_stage"]:
            customer.lifecycle_changed_at = utcnow()
        customer.updated_at = utcnow()
        self._flush_versioned(customer_id)
        after = to_dict(customer)
        changed = {field: {"old": before[field], "new": after[field]}
                   for field in after if before[field] != after[field]
                   and field not in ("updated_at", "version")}
        record_event(self.session, PRODUCER, "customer.updated",
                     {**after, "changes": changed}, self.context)
        return after

    def delete(self, customer_id, expected_version=None):
        """Soft delete: the record stays for history and can be restored."""
        self._require_writer()
        customer = self.get(customer_id)
        if expected_version is not None and customer.version != expected_version:
            raise VersionMismatch(
                f"Customer {customer_id} is at version {customer.version}, not {expected_version}.")
        customer.deleted_at = customer.updated_at = utcnow()
        self._flush_versioned(customer_id)
        record_event(self.session, PRODUCER, "customer.deleted", to_dict(customer), self.context)

    def _record_assignment(self, customer, previous_owner_id):
        # The version lets consumers order this against the customer's snapshots.
        record_event(self.session, PRODUCER, "customer.assigned", {
            "customer_id": customer.id,
            "name": customer.name,
            "owner_id": customer.owner_id,
            "owner_team_id": customer.owner_team_id,
            "previous_owner_id": previous_owner_id,
            "version": customer.version,
        }, self.context)

    def _flush_versioned(self, customer_id):
        try:
            self.session.flush()
        except StaleDataError:
            raise VersionMismatch(f"Customer {customer_id} was changed by someone else; reload it.")
