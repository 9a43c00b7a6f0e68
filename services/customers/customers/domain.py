"""Customer records: who may see and change what, what each change records
in the history, and what it publishes.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
from marshmallow import ValidationError as MarshmallowValidationError
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import joinedload

from crm_common.context import RequestContext
from crm_common.crypto import blind_index
from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from crm_common.metrics import count_after_commit
from crm_common.audit import record_audit
from crm_common.outbox import record_event
from crm_common.pagination import check_limit, keyset_page, parse_sort
from crm_common.permissions import visibility
from crm_common.types import utcnow
from crm_common.validation import load

from customers.metrics import CUSTOMERS_CREATED
from crm_common.versioning import check_version, flush_versioned

from customers import search
from customers.custom_fields import CustomFieldCatalogue
from customers.models import Contact, Customer, CustomerHistory, CustomerIdentifier, CustomerTag, Followup
from customers.schemas import normalise_phone
from customers.schemas import (
    SORTABLE, AssignRequest, BulkAssignRequest, CustomerCreate, CustomerFilters, CustomerOut, CustomerUpdate,
    HistoryEntryOut, MergeRequest,
)

PRODUCER = "customers"
WRITER_ROLES = ("admin", "manager", "sales", "system")
ASSIGNER_ROLES = ("admin", "manager", "system")
# Fields a change to which is not worth a history line of its own.
UNTRACKED = ("updated_at", "version", "lifecycle_changed_at", "lifecycle_dates")
# Sorting by tier puts customers without a tier after D.
NO_TIER = "~"

customer_out = CustomerOut()
history_out = HistoryEntryOut()


def to_dict(customer):
    return customer_out.dump(customer)


def visible_to(context: RequestContext):
    """The SQL condition for the customers this caller may see (None: all)."""
    return visibility(context, Customer.owner_id, Customer.owner_team_id)


def diff(before, after):
    """{field: {"old", "new"}} for every field that changed."""
    return {field: {"old": before.get(field), "new": after[field]}
            for field in after if before.get(field) != after[field] and field not in UNTRACKED}


def identifiers_of(contact):
    """The normalised phones and emails by which a customer can be found exactly."""
    contact = contact or {}
    return ({("phone", phone) for phone in contact.get("phones") or ()}
            | {("email", email) for email in contact.get("emails") or ()})


def identifier_value(kind, value):
    """What customer_identifiers stores for a normalised phone or email: its blind index, so
    exact lookup and duplicate detection work in SQL without the value being readable there."""
    return blind_index(kind, value)


def normalise_probe(kind, value):
    """A ?phone= / ?email= filter as the identifiers store it (a blind index matches only exactly)."""
    value = value.strip()
    if kind == "email":
        return value.lower()
    try:
        return normalise_phone(value)
    except MarshmallowValidationError:
        return value


class CustomerBook:
    """The customer records as one caller may use them."""

    def __init__(self, session, context: RequestContext):
        self.session = session
        self.context = context

    # --- reading ---------------------------------------------------------

    def get(self, customer_id, include_deleted=False):
        # The tags in the same query (a join, not the relationship's second SELECT): one round
        # trip per read.
        statement = (select(Customer).where(Customer.id == str(customer_id))
                     .options(joinedload(Customer.tag_rows)))
        condition = visible_to(self.context)
        if condition is not None:
            statement = statement.where(condition)
        customer = self.session.execute(statement).unique().scalar_one_or_none()
        if customer is None or (customer.deleted_at and not include_deleted):
            # Records the caller may not see answer exactly like missing ones.
            raise NotFound(f"Customer {customer_id} was not found.")
        return customer

    def statement(self, filters=None, sort=None):
        """The visible customers matching ``filters``: (select, sort column, descending, sort value of a row)."""
        filters = load(CustomerFilters, filters or {})
        sort_column, descending, sort_value = self._sort(sort)
        statement = select(Customer)
        condition = visible_to(self.context)
        if condition is not None:
            statement = statement.where(condition)
        if filters["include_deleted"]:
            if not self.context.is_admin:
                raise Forbidden("Only admins may list deleted customers.")
        else:
            statement = statement.where(Customer.deleted_at.is_(None))
        # Every word must appear somewhere, in the way this database's indexes can find.
        statement = search.matching(statement, filters.get("q", ""), self.session.get_bind().dialect.name)
        for field in ("kind", "lifecycle_stage", "tier", "region", "industry", "source", "owner_id"):
            if field in filters:
                statement = statement.where(getattr(Customer, field) == filters[field])
        for tag in filters.get("tag", ()):
            statement = statement.where(Customer.tag_rows.any(CustomerTag.tag == tag.strip()))
        if "created_from" in filters:
            statement = statement.where(Customer.created_at >= filters["created_from"])
        if "created_to" in filters:
            statement = statement.where(Customer.created_at <= filters["created_to"])
        if "has_followup_due" in filters:
            due = and_(Customer.next_followup_at.is_not(None), Customer.next_followup_at <= utcnow())
            statement = statement.where(due if filters["has_followup_due"] else ~due)
        for kind in ("phone", "email"):
            if kind in filters:
                statement = statement.where(Customer.identifiers.any(and_(
                    CustomerIdentifier.kind == kind,
                    CustomerIdentifier.value == identifier_value(kind, normalise_probe(kind, filters[kind])))))
        return statement, sort_column, descending, sort_value

    def list(self, filters=None, limit=None, cursor=None, sort=None):
        limit = check_limit(limit)
        statement, sort_column, descending, sort_value = self.statement(filters, sort)
        # The page's tags in the same round trip (SQLAlchemy joins them to the limited page): a
        # second SELECT per page was a fifth of a search's time in this service.
        statement = statement.options(joinedload(Customer.tag_rows))
        rows, next_cursor = keyset_page(self.session, statement, sort_column, Customer.id,
                                        descending, limit, cursor, sort_value=sort_value)
        return {"items": [to_dict(row) for row in rows], "next_cursor": next_cursor}

    @staticmethod
    def _sort(sort):
        name, descending = parse_sort(sort, SORTABLE)
        if name == "tier":
            return func.coalesce(Customer.tier, NO_TIER), descending, lambda row: row.tier or NO_TIER
        return getattr(Customer, name), descending, None

    def history(self, customer_id, limit=None, cursor=None):
        """Every change to the customer, newest first."""
        self.get(customer_id, include_deleted=self.context.is_admin)
        statement = select(CustomerHistory).where(CustomerHistory.customer_id == str(customer_id))
        rows, next_cursor = keyset_page(self.session, statement, CustomerHistory.id, CustomerHistory.id,
                                        True, limit, cursor)
        return {"items": [history_out.dump(row) for row in rows], "next_cursor": next_cursor}

    def duplicates(self, customer_id):
        """The visible customers that are likely the same as this one, with the reasons."""
        customer = self.get(customer_id)
        found = self.find_duplicates(identifiers_of(customer.contact), customer.dedupe_key, exclude_id=customer.id)
        condition = visible_to(self.context)
        visible = {row.id for row in found} if condition is None else set(self.session.execute(
            select(Customer.id).where(Customer.id.in_([row.id for row in found]), condition)).scalars())
        return {"items": [{**to_dict(row), "reasons": reasons} for row, reasons in found.items()
                          if row.id in visible]}

    def find_duplicates(self, identifiers, dedupe_key, exclude_id=None):
        """{customer: [reasons]} of live customers sharing a phone, an email, or name + company.

        ``identifiers``: normalised (kind, value) pairs; they are matched by blind index."""
        found = {}
        probes = {(kind, identifier_value(kind, value)): value for kind, value in identifiers}
        conditions = [and_(CustomerIdentifier.kind == kind, CustomerIdentifier.value == hashed)
                      for kind, hashed in probes]
        if conditions:
            matches = self.session.execute(
                select(Customer, CustomerIdentifier.kind, CustomerIdentifier.value)
                .join(CustomerIdentifier, CustomerIdentifier.customer_id == Customer.id)
                .where(or_(*conditions), Customer.deleted_at.is_(None))).all()
            for customer, kind, hashed in matches:
                found.setdefault(customer, []).append(f"same {kind}: {probes[(kind, hashed)]}")
        if dedupe_key and not dedupe_key.startswith("|"):
            for customer in self.session.execute(select(Customer).where(
                    Customer.dedupe_key == dedupe_key, Customer.deleted_at.is_(None))).scalars():
                found.setdefault(customer, []).append("same name and company")
        found.pop(next((c for c in found if c.id == exclude_id), None), None)
        return found

    # --- changing --------------------------------------------------------

    def require_writer(self):
        if self.context.role not in WRITER_ROLES:
            raise Forbidden("Your role may not change customers.")

    def prepare(self, data, owner_team_id=None):
        """Validate ``data`` and build the new Customer (not yet added to the session)."""
        self.require_writer()
        data = load(CustomerCreate, data)
        owner_id = data.pop("owner_id", None) or self.context.user_id
        if self.context.role == "sales" and owner_id != self.context.user_id:
            raise ValidationFailed("Sales users own the customers they create.",
                                   {"owner_id": ["You may not assign customers to another user."]})
        data["custom_fields"] = CustomFieldCatalogue(self.session, self.context).check(
            data.get("custom_fields") or {})
        tags = data.pop("tags", [])
        now = utcnow()
        stage = data.pop("lifecycle_stage", "lead")
        data.setdefault("company", {})
        data.setdefault("contact", {})
        customer = Customer(
            **data,
            owner_id=owner_id,
            owner_team_id=owner_team_id if owner_team_id is not None else self.context.team_id,
            lifecycle_stage=stage,
            lifecycle_changed_at=now,
            lifecycle_dates={stage: now.isoformat()},
            created_by=self.context.user_id,
            created_at=now,
            updated_at=now,
        )
        customer.tag_rows = [CustomerTag(tag=tag) for tag in tags]
        self._index(customer, contact_names=())
        return customer

    def create(self, data, owner_team_id=None, allow_duplicate=False):
        customer = self.prepare(data, owner_team_id)
        self._refuse_taken_external_id(customer.external_id)
        if not allow_duplicate:
            found = self.find_duplicates(identifiers_of(customer.contact), customer.dedupe_key)
            replayed = self._created_by_this_request(customer, found)
            if replayed is not None:
                return to_dict(replayed)
            if found:
                raise Conflict("A customer like this one already exists. Send allow_duplicate=true to create it anyway.",
                               extra={"candidates": self._describe_candidates(found)})
        self.session.add(customer)
        self.session.flush()
        snapshot = to_dict(customer)
        self.record_history(customer, "created", diff({}, snapshot))
        record_event(self.session, PRODUCER, "customer.created", snapshot, self.context)
        count_after_commit(self.session, CUSTOMERS_CREATED.labels(customer.kind))
        if customer.owner_id:
            self._record_assignment(customer, previous_owner_id=None)
        return snapshot

    def _created_by_this_request(self, customer, candidates):
        """The candidate this very request created from the same data, if any: a request
        redelivered after its first delivery committed (the instance died before answering) finds
        its own customer as a duplicate, and must answer with it rather than refuse the caller's
        own write. Same request id, same actor, same name, kind and contact details."""
        candidates = [candidate for candidate in candidates
                      if (candidate.name, candidate.kind, candidate.contact)
                      == (customer.name, customer.kind, customer.contact)]
        if not candidates or not self.context.request_id:
            return None
        mine = self.session.execute(
            select(CustomerHistory.customer_id).where(
                CustomerHistory.customer_id.in_([candidate.id for candidate in candidates]),
                CustomerHistory.action == "created", CustomerHistory.request_id == self.context.request_id,
                CustomerHistory.actor_id == self.context.user_id)).scalars().first()
        return next((candidate for candidate in candidates if candidate.id == mine), None)

    def update(self, customer_id, changes, expected_version=None):
        self.require_writer()
        changes = load(CustomerUpdate, changes)
        customer = self._get_at_version(customer_id, expected_version)
        if "external_id" in changes and changes["external_id"] != customer.external_id:
            self._refuse_taken_external_id(changes["external_id"])
        if "custom_fields" in changes:
            merged = {**customer.custom_fields, **changes["custom_fields"]}
            changes["custom_fields"] = CustomFieldCatalogue(self.session, self.context).check(
                {key: value for key, value in merged.items() if value is not None})
        before = to_dict(customer)
        if "tags" in changes:
            customer.tag_rows = [CustomerTag(tag=tag) for tag in changes.pop("tags")]
        if "lifecycle_stage" in changes and changes["lifecycle_stage"] != customer.lifecycle_stage:
            now = utcnow()
            customer.lifecycle_changed_at = now
            customer.lifecycle_dates = {**customer.lifecycle_dates, changes["lifecycle_stage"]: now.isoformat()}
        for field, value in changes.items():
            setattr(customer, field, value)
        return self._save_change(customer, before, "updated")

    def delete(self, customer_id, expected_version=None):
        """Soft delete: the record stays for history and can be restored."""
        self.require_writer()
        customer = self._get_at_version(customer_id, expected_version)
        customer.deleted_at = customer.updated_at = utcnow()
        self._flush_versioned(customer_id)
        self.record_history(customer, "deleted", {"deleted_at": {"old": None, "new": customer.deleted_at.isoformat()}})
        record_event(self.session, PRODUCER, "customer.deleted", to_dict(customer), self.context)

    def restore(self, customer_id):
        """Undo a soft delete (not of a customer merged into another: restore the merge target instead)."""
        self.require_writer()
        customer = self.get(customer_id, include_deleted=True)
        if customer.deleted_at is None:
            raise Conflict(f"Customer {customer_id} is not deleted.")
        if customer.merged_into_id:
            raise Conflict(f"Customer {customer_id} was merged into {customer.merged_into_id}; it cannot come back.")
        before = to_dict(customer)
        customer.deleted_at = None
        return self._save_change(customer, before, "restored")

    def assign(self, customer_id, data, owner_team_id):
        """Give the customer to another owner (``owner_team_id``: that owner's team, looked up by the caller)."""
        owner_id = load(AssignRequest, data)["owner_id"]
        customer = self._get_assignable(customer_id)
        return self._reassign(customer, owner_id, owner_team_id)

    def bulk_assign(self, data, owner_team_id):
        """Assign many customers at once: all or none (one the caller may not assign fails the lot)."""
        request = load(BulkAssignRequest, data)
        assigned = []
        for customer_id in request["customer_ids"]:
            try:
                customer = self._get_assignable(customer_id)
            except NotFound:
                raise ValidationFailed("Some customers cannot be assigned; nothing was changed.",
                                       {"customer_ids": [f"Customer {customer_id} was not found."]})
            assigned.append(self._reassign(customer, request["owner_id"], owner_team_id))
        return {"items": assigned}

    def merge(self, target_id, data):
        """Fold the source customer into the target: contacts, follow-ups, tags and identifiers
        move over, the target keeps its values except the fields taken from the source, and the
        source is soft-deleted pointing at the target."""
        self.require_writer()
        request = load(MergeRequest, data)
        if request["source_id"] == str(target_id):
            raise ValidationFailed("A customer cannot be merged into itself.",
                                   {"source_id": ["Give another customer's id."]})
        target = self.get(target_id)
        try:
            source = self.get(request["source_id"])
        except NotFound:
            raise ValidationFailed("The source customer was not found.",
                                   {"source_id": [f"Customer {request['source_id']} was not found."]})
        before = to_dict(target)
        for field in request["take_from_source"]:
            setattr(target, field, getattr(source, field))
        target.tag_rows = [CustomerTag(tag=tag) for tag in sorted(set(target.tags) | set(source.tags))]
        contact = dict(target.contact)
        for key in ("phones", "emails"):
            contact[key] = list(dict.fromkeys((target.contact.get(key) or []) + (source.contact.get(key) or [])))
        target.contact = contact
        moved_contacts = self.session.execute(
            Contact.__table__.update().where(Contact.customer_id == source.id).values(customer_id=target.id)).rowcount
        moved_followups = self.session.execute(
            Followup.__table__.update().where(Followup.customer_id == source.id).values(customer_id=target.id)).rowcount
        target.next_followup_at = min(
            (at for at in (target.next_followup_at, source.next_followup_at) if at is not None), default=None)
        source.deleted_at = source.updated_at = utcnow()
        source.merged_into_id = target.id
        self._flush_versioned(source.id)
        self.record_history(source, "merged_into", {"merged_into_id": {"old": None, "new": target.id}})
        record_event(self.session, PRODUCER, "customer.deleted", to_dict(source), self.context)
        merged = self._save_change(target, before, "merged", extra={
            "merged_from_id": {"old": None, "new": source.id},
            "contacts_moved": {"old": None, "new": moved_contacts},
            "followups_moved": {"old": None, "new": moved_followups},
        })
        record_event(self.session, PRODUCER, "customer.merged", {
            "target_id": target.id, "source_id": source.id, "target_version": target.version}, self.context)
        # The row changes are audited on their own (target updated, source deleted); this says they were one merge.
        record_audit(self.session, self.context, PRODUCER, "customer.merged", "customer", target.id, detail={
            "source_id": source.id, "fields_taken_from_source": list(request["take_from_source"]),
            "contacts_moved": moved_contacts, "followups_moved": moved_followups})
        return merged

    # --- used by contacts, follow-ups and imports -------------------------

    def record_history(self, customer, action, changes):
        self.session.add(CustomerHistory(
            customer_id=customer.id, action=action, changes=changes, actor_id=self.context.user_id,
            actor_role=self.context.role, request_id=self.context.request_id, occurred_at=utcnow()))

    def refresh_search(self, customer):
        """Recompute what search and duplicate detection read (contact names are part of it)."""
        with self.session.no_autoflush:
            names = self.session.execute(select(Contact.name).where(Contact.customer_id == customer.id)).scalars()
            self._index(customer, contact_names=list(names))

    # --- internals -------------------------------------------------------

    def _index(self, customer, contact_names):
        company_name = (customer.company or {}).get("name")
        customer.search_text = search.search_text(customer.name, company_name, contact_names)
        customer.dedupe_key = search.dedupe_key(customer.name, company_name if customer.kind == "person" else None)
        wanted = {(kind, identifier_value(kind, value)) for kind, value in identifiers_of(customer.contact)}
        current = {(i.kind, i.value): i for i in customer.identifiers}
        for key in set(current) - wanted:
            customer.identifiers.remove(current[key])
        for kind, value in wanted - set(current):
            customer.identifiers.append(CustomerIdentifier(kind=kind, value=value))

    def _save_change(self, customer, before, action, extra=None):
        """Re-index, flush under the version check, and record history and the event."""
        customer.updated_at = utcnow()
        self.refresh_search(customer)
        # One flush, so one change is one version.
        self._flush_versioned(customer.id)
        after = to_dict(customer)
        changes = {**diff(before, after), **(extra or {})}
        self.record_history(customer, action, changes)
        record_event(self.session, PRODUCER, "customer.updated", {**after, "changes": changes}, self.context)
        return after

    def _get_at_version(self, customer_id, expected_version):
        customer = self.get(customer_id)
        check_version(customer, expected_version, f"Customer {customer_id}")
        return customer

    def _get_assignable(self, customer_id):
        if self.context.role not in ASSIGNER_ROLES:
            raise Forbidden("Only managers and admins assign customers.")
        return self.get(customer_id)

    def _reassign(self, customer, owner_id, owner_team_id):
        if self.context.role == "manager" and owner_team_id != self.context.team_id:
            raise ValidationFailed("Managers assign customers within their team.",
                                   {"owner_id": ["This user is not in your team."]})
        previous_owner_id = customer.owner_id
        if owner_id == previous_owner_id:
            return to_dict(customer)
        before = to_dict(customer)
        customer.owner_id, customer.owner_team_id = owner_id, owner_team_id
        # Open next steps move with the customer: the new owner's day plan shows them.
        self.session.execute(Followup.__table__.update().where(
            Followup.customer_id == customer.id, Followup.closed_at.is_(None)
        ).values(owner_id=owner_id, owner_team_id=owner_team_id))
        after = self._save_change(customer, before, "assigned")
        self._record_assignment(customer, previous_owner_id)
        return after

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

    def _refuse_taken_external_id(self, external_id):
        if external_id and self.session.execute(
                select(Customer.id).where(Customer.external_id == external_id)).first():
            raise Conflict(f"Another customer already has external id {external_id!r}.")

    def _describe_candidates(self, found):
        """Candidates the caller may see in full; of the others only the owner, so they can ask."""
        condition = visible_to(self.context)
        ids = [customer.id for customer in found]
        visible = set(ids) if condition is None else set(self.session.execute(
            select(Customer.id).where(Customer.id.in_(ids), condition)).scalars())
        described = []
        for customer, reasons in found.items():
            if customer.id in visible:
                described.append({"id": customer.id, "name": customer.name, "owner_id": customer.owner_id,
                                  "reasons": reasons})
            else:
                described.append({"id": None, "name": None, "owner_id": customer.owner_id, "reasons": reasons})
        return described

    def _flush_versioned(self, customer_id):
        flush_versioned(self.session, f"Customer {customer_id}")

