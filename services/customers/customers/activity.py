"""The people at a company customer, the follow-ups that make up the
relationship history, and the customer list filters users save as views.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
Who may see or change a customer is decided once, by CustomerBook: contacts
and follow-ups are reached through their customer, so they follow its rule.
"""
from datetime import datetime, time, timezone

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from crm_common.errors import Conflict, Forbidden, NotFound
from crm_common.metrics import count_after_commit
from crm_common.outbox import record_event
from crm_common.pagination import check_limit, keyset_page
from crm_common.types import utcnow
from crm_common.versioning import check_version, flush_versioned
from crm_common.validation import load

from customers.activity_schemas import (
    ContactCreate, ContactOut, ContactUpdate, DueFollowupsQuery, FollowupCreate, FollowupOut,
    ViewCreate, ViewOut,
)
from customers.domain import PRODUCER, CustomerBook, visible_to
from customers.metrics import FOLLOWUPS_LOGGED
from customers.models import Contact, Customer, Followup, SavedView

# Contacts and saved views are listed whole; refusing the one past the cap
# keeps every list complete instead of silently cut.
MAX_CONTACTS_PER_CUSTOMER = 500
MAX_VIEWS_PER_USER = 500
# Bookkeeping columns: a history line lists what a person changed.
CONTACT_UNTRACKED = ("id", "customer_id", "created_by", "created_at", "updated_at", "version")

contact_out = ContactOut()
followup_out = FollowupOut()
view_out = ViewOut()


def end_of_today():
    return datetime.combine(utcnow().date(), time.max, tzinfo=timezone.utc)


def followup_event_data(followup, customer_name, closed_followup_ids):
    """A follow-up as followup.logged and reporting's rebuild pages carry it. The owner is the
    customer's owner when it was logged (copied onto the row then)."""
    logged = followup_out.dump(followup)
    return {
        "id": followup.id,
        "customer_id": followup.customer_id,
        "customer_name": customer_name,
        "owner_id": followup.owner_id,
        "owner_team_id": followup.owner_team_id,
        "type": followup.type,
        "occurred_at": logged["occurred_at"],
        "summary": followup.summary,
        "outcome": followup.outcome,
        "next_followup_at": logged["next_followup_at"],
        "closed_followup_ids": closed_followup_ids,
        "logged_by": followup.created_by,
    }


class ThroughCustomer:
    """Records reached through their customer: CustomerBook decides who may see and change them."""

    def __init__(self, session, context):
        self.session = session
        self.context = context
        self.book = CustomerBook(session, context)


class Contacts(ThroughCustomer):
    """The contacts of the customers one caller may see."""

    def list(self, customer_id):
        customer = self.book.get(customer_id)
        rows = self.session.execute(
            select(Contact).where(Contact.customer_id == customer.id)
            .order_by(Contact.is_primary.desc(), Contact.name, Contact.id)
            .limit(MAX_CONTACTS_PER_CUSTOMER)
        ).scalars()
        return {"items": [contact_out.dump(row) for row in rows]}

    def get(self, customer_id, contact_id):
        return contact_out.dump(self._find(self.book.get(customer_id), contact_id))

    def create(self, customer_id, data):
        self.book.require_writer()
        customer = self.book.get(customer_id)
        data = load(ContactCreate, data)
        if customer.kind != "company":
            raise Conflict(f"Customer {customer_id} is a person; only company customers have contacts. "
                           "Put a person's phones and emails on the customer itself.")
        existing = self.session.execute(
            select(func.count()).select_from(Contact).where(Contact.customer_id == customer.id)).scalar_one()
        if existing >= MAX_CONTACTS_PER_CUSTOMER:
            raise Conflict(f"A customer has at most {MAX_CONTACTS_PER_CUSTOMER} contacts.")
        # The first contact is whom to call; until someone says otherwise.
        data["is_primary"] = data.get("is_primary", False) or existing == 0
        now = utcnow()
        contact = Contact(**data, customer_id=customer.id, created_by=self.context.user_id,
                          created_at=now, updated_at=now)
        if contact.is_primary:
            self._unmark_primary(customer, keep=None)
        self.session.add(contact)
        self.session.flush()
        after = contact_out.dump(contact)
        self._changed(customer, "contact_added", {}, after)
        return after

    def update(self, customer_id, contact_id, changes, expected_version=None):
        self.book.require_writer()
        customer = self.book.get(customer_id)
        changes = load(ContactUpdate, changes)
        contact = self._find(customer, contact_id)
        check_version(contact, expected_version, f"Contact {contact_id}")
        before = contact_out.dump(contact)
        changes = {field: value for field, value in changes.items() if getattr(contact, field) != value}
        if not changes:
            # Saving what is already there changes nothing: no new version, no history line.
            return before
        for field, value in changes.items():
            setattr(contact, field, value)
        if changes.get("is_primary"):
            self._unmark_primary(customer, keep=contact)
        contact.updated_at = utcnow()
        flush_versioned(self.session, f"Contact {contact_id}")
        after = contact_out.dump(contact)
        self._changed(customer, "contact_updated", before, after)
        return after

    def delete(self, customer_id, contact_id):
        self.book.require_writer()
        customer = self.book.get(customer_id)
        contact = self._find(customer, contact_id)
        before = contact_out.dump(contact)
        self.session.delete(contact)
        self.session.flush()
        self._changed(customer, "contact_removed", before, {})

    def _find(self, customer, contact_id):
        contact = self.session.execute(select(Contact).where(
            Contact.id == str(contact_id), Contact.customer_id == customer.id)).scalar_one_or_none()
        if contact is None:
            raise NotFound(f"Contact {contact_id} was not found at customer {customer.id}.")
        return contact

    def _unmark_primary(self, customer, keep):
        """At most one primary contact: the one made primary now takes the flag from the others."""
        others = self.session.execute(select(Contact).where(
            Contact.customer_id == customer.id, Contact.is_primary.is_(True))).scalars()
        for other in others:
            if other is not keep:
                other.is_primary = False
                other.updated_at = utcnow()

    def _changed(self, customer, action, before, after):
        """Record the change in the customer's history and re-index the customer.

        The history line names the contact (``id``) beside the fields that
        changed, since a customer has many contacts. Contact names are part of
        keyword search, so the customer's search text is recomputed; that is a
        change of the customer, and its version moves on.
        """
        contact_id = after.get("id") or before.get("id")
        changes = {field: {"old": before.get(field), "new": after.get(field)}
                   for field in (after or before)
                   if field not in CONTACT_UNTRACKED and before.get(field) != after.get(field)}
        changes["id"] = {"old": before.get("id"), "new": after.get("id")}
        self.book.record_history(customer, action, changes)
        self.book.refresh_search(customer)
        customer.updated_at = utcnow()
        flush_versioned(self.session, f"Customer {customer.id} (contact {contact_id})")


class Followups(ThroughCustomer):
    """Logging and reading follow-ups of the customers one caller may see."""

    def log(self, customer_id, data):
        """Log a follow-up that happened; it takes over the customer's next step.

        Earlier open follow-ups are closed by this one (their next step is
        done or replaced), and the customer's next_followup_at becomes this
        one's. The event tells notifications which reminder to create and
        which to close.
        """
        self.book.require_writer()
        customer = self.book.get(customer_id)
        data = load(FollowupCreate, data)
        now = utcnow()
        followup = Followup(**data, customer_id=customer.id, owner_id=customer.owner_id,
                            owner_team_id=customer.owner_team_id, created_by=self.context.user_id,
                            created_at=now)
        self.session.add(followup)
        self.session.flush()
        count_after_commit(self.session, FOLLOWUPS_LOGGED.labels(followup.type))
        earlier = self.session.execute(select(Followup).where(
            Followup.customer_id == customer.id, Followup.closed_at.is_(None), Followup.id != followup.id,
        ).order_by(Followup.occurred_at, Followup.id)).scalars().all()
        for row in earlier:
            row.closed_at = now
            row.closed_by_followup_id = followup.id
        previous_next = customer.next_followup_at
        customer.next_followup_at = followup.next_followup_at
        customer.updated_at = now
        flush_versioned(self.session, f"Customer {customer.id}")
        logged = followup_out.dump(followup)
        closed_ids = [row.id for row in earlier]
        self.book.record_history(customer, "followup_logged", {
            "followup_id": {"old": None, "new": followup.id},
            "next_followup_at": {"old": previous_next.isoformat() if previous_next else None,
                                 "new": logged["next_followup_at"]},
        })
        record_event(self.session, PRODUCER, "followup.logged",
                     followup_event_data(followup, customer.name, closed_ids), self.context)
        return logged

    def list(self, customer_id, limit=None, cursor=None):
        """A customer's relationship history, newest first."""
        customer = self.book.get(customer_id)
        rows, next_cursor = keyset_page(
            self.session, select(Followup).where(Followup.customer_id == customer.id),
            Followup.occurred_at, Followup.id, True, limit, cursor)
        return {"items": [followup_out.dump(row) for row in rows], "next_cursor": next_cursor}

    def get(self, followup_id):
        followup = self.session.get(Followup, str(followup_id))
        if followup is not None:
            try:
                self.book.get(followup.customer_id)
            except NotFound:
                followup = None
        if followup is None:
            # A follow-up of a customer the caller may not see is not there for them.
            raise NotFound(f"Follow-up {followup_id} was not found.")
        return followup_out.dump(followup)

    def due(self, owner_id=None, due_before=None, limit=None, cursor=None):
        """The open next steps due by ``due_before`` of the customers ``owner_id`` owns now: a day plan.

        The customer's current owner decides (not the owner when the
        follow-up was logged): a customer handed over takes its next step to
        the new owner. Visibility applies on top, so a sales user asking for
        someone else's plan sees nothing.
        """
        query = load(DueFollowupsQuery, {key: value for key, value in
                                           (("owner_id", owner_id), ("due_before", due_before))
                                           if value is not None})
        limit = check_limit(limit)
        owner_id = query.get("owner_id", self.context.user_id)
        statement = select(Followup).join(Customer, Customer.id == Followup.customer_id).where(
            Followup.closed_at.is_(None),
            Followup.next_followup_at.is_not(None),
            Followup.next_followup_at <= query.get("due_before", end_of_today()),
            Customer.deleted_at.is_(None),
            Customer.owner_id == owner_id,
        )
        condition = visible_to(self.context)
        if condition is not None:
            statement = statement.where(condition)
        rows, next_cursor = keyset_page(self.session, statement, Followup.next_followup_at, Followup.id,
                                        False, limit, cursor)
        names = dict(self.session.execute(select(Customer.id, Customer.name).where(
            Customer.id.in_({row.customer_id for row in rows}))).all()) if rows else {}
        return {"items": [{**followup_out.dump(row), "customer_name": names[row.customer_id]} for row in rows],
                "next_cursor": next_cursor}


class SavedViews:
    """The named customer list filters of the calling user: private to them."""

    def __init__(self, session, context):
        self.session = session
        self.context = context

    def create(self, data):
        if self.context.user_id is None:
            raise Forbidden("Saved views belong to a signed-in user.")
        data = load(ViewCreate, data)
        mine = self._mine()
        if self.session.execute(select(SavedView.id).where(mine, SavedView.name == data["name"])).first():
            raise Conflict(f"You already have a view named {data['name']!r}.",
                           {"name": ["You already have a view with this name."]})
        if self.session.execute(select(func.count()).select_from(SavedView).where(mine)).scalar_one() \
                >= MAX_VIEWS_PER_USER:
            raise Conflict(f"A user keeps at most {MAX_VIEWS_PER_USER} views.")
        view = SavedView(**data, user_id=self.context.user_id, created_at=utcnow())
        self.session.add(view)
        try:
            self.session.flush()
        except IntegrityError:
            # Two requests with one name at once: the unique constraint decides.
            raise Conflict(f"You already have a view named {data['name']!r}.",
                           {"name": ["You already have a view with this name."]})
        return view_out.dump(view)

    def list(self):
        rows = self.session.execute(select(SavedView).where(self._mine())
                                    .order_by(SavedView.name, SavedView.id).limit(MAX_VIEWS_PER_USER)).scalars()
        return {"items": [view_out.dump(row) for row in rows]}

    def get(self, view_id):
        return view_out.dump(self._find(view_id))

    def delete(self, view_id):
        self.session.delete(self._find(view_id))
        self.session.flush()

    def _mine(self):
        return SavedView.user_id == self.context.user_id

    def _find(self, view_id):
        view = self.session.execute(select(SavedView).where(
            SavedView.id == str(view_id), self._mine())).scalar_one_or_none()
        if view is None:
            # Another user's view answers like a missing one.
            raise NotFound(f"View {view_id} was not found.")
        return view
