"""A person's data rights: everything this service holds about a customer, and its erasure.

``personal_data`` gathers the record, its contacts, follow-ups and change
history. ``erase_customer`` anonymises the customer in place rather than
deleting it: sales keeps orders and amounts for accounting, and they keep
pointing at a record (now called "Erased customer <id prefix>"). What goes:

- name (replaced), contact details, company details, notes, custom fields;
- contacts (deleted), follow-up summaries and outcomes ("[erased]");
- every value in the change history (field names, who and when stay);
- the phone/email identifiers, search text and duplicate key (recomputed);
- this service's already published outbox rows that carry the customer
  (old snapshots with the name and phones), so the database keeps no copy.

What stays: ids, kind, owner, lifecycle stage and dates, tier, region,
industry, source, tags (classification labels, not personal data) and
``external_id`` (the key of the system the customer was imported from: a
legacy id, not personal data, and imports stay idempotent by it).

A customer merged into another is the same person as the merge target: the
target's erasure also erases it; erasing it directly is refused (409) naming
the target. A soft-deleted customer can be erased (the right applies to
records kept for restore too); it stays deleted.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
import logging

from sqlalchemy import delete, select

from crm_common.audit import record_audit
from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from crm_common.outbox import delete_published_mentioning, record_event
from crm_common.types import utcnow
from crm_common.versioning import flush_versioned

from customers.activity import contact_out, followup_out
from customers.domain import PRODUCER, CustomerBook, history_out, to_dict
from customers.models import Contact, Customer, CustomerHistory, Followup

log = logging.getLogger(__name__)

ERASED_TEXT = "[erased]"
ERASED_NAME = "Erased customer"
MAX_REASON_LENGTH = 500
# Company details that describe a market segment, not a person: kept for reports.
KEPT_COMPANY_KEYS = ("industry", "size")
# Published outbox rows are read this many at a time while looking for the customer's.
OUTBOX_SCAN_BATCH = 500
# A merge chain longer than this is a bug, not a customer.
MAX_MERGED = 1000


def erased_name(customer_id):
    """The name an erased customer gets: distinguishable in lists, saying nothing about the person."""
    return f"{ERASED_NAME} {str(customer_id)[:8]}"


def require_admin(context):
    if not context.is_admin:
        raise Forbidden("Only admins handle personal data requests.")


def _find(session, customer_id):
    customer = session.execute(select(Customer).where(Customer.id == str(customer_id))).scalar_one_or_none()
    if customer is None:
        raise NotFound(f"Customer {customer_id} was not found.")
    return customer


def _merged_into(session, customer):
    """The customers merged (directly or through others) into ``customer``: the same person."""
    found, frontier = [], [customer.id]
    while frontier and len(found) < MAX_MERGED:
        rows = session.execute(select(Customer).where(Customer.merged_into_id.in_(frontier))).scalars().all()
        found.extend(rows)
        frontier = [row.id for row in rows]
    return found


def _record_data(session, customer):
    contacts = session.execute(select(Contact).where(Contact.customer_id == customer.id)
                               .order_by(Contact.created_at, Contact.id)).scalars()
    followups = session.execute(select(Followup).where(Followup.customer_id == customer.id)
                                .order_by(Followup.occurred_at, Followup.id)).scalars()
    history = session.execute(select(CustomerHistory).where(CustomerHistory.customer_id == customer.id)
                              .order_by(CustomerHistory.id)).scalars()
    return {
        "customer": to_dict(customer),
        "contacts": [contact_out.dump(row) for row in contacts],
        "followups": [followup_out.dump(row) for row in followups],
        "history": [history_out.dump(row) for row in history],
    }


def personal_data(session, context, customer_id):
    """Everything this service holds about the customer (deleted ones too), and about the
    customers merged into it: {"customer", "contacts", "followups", "history", "merged_customers"}."""
    require_admin(context)
    customer = _find(session, customer_id)
    data = _record_data(session, customer)
    data["merged_customers"] = [_record_data(session, row) for row in _merged_into(session, customer)]
    return data


def check_reason(reason):
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed("Say why the customer's data is erased.", {"reason": ["Give a reason."]})
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationFailed("The reason is too long.",
                               {"reason": [f"At most {MAX_REASON_LENGTH} characters."]})
    return reason.strip()


def erase_customer(session, context, customer_id, reason):
    """Anonymise the customer (and the customers merged into it) everywhere in this service,
    publish customer.updated and customer.erased, and record it in the audit trail.
    Returns {"customer_id", "erased_at"}."""
    require_admin(context)
    reason = check_reason(reason)
    customer = _find(session, customer_id)
    if customer.erased_at is not None:
        raise Conflict(f"Customer {customer.id} was already erased on {customer.erased_at.isoformat()}.")
    if customer.merged_into_id:
        raise Conflict(f"Customer {customer.id} was merged into {customer.merged_into_id}: erase that customer, "
                       "which erases this one too.")
    now = utcnow()
    book = CustomerBook(session, context)
    erased = [customer] + [row for row in _merged_into(session, customer) if row.erased_at is None]
    for row in erased:
        _anonymise(session, book, row, now)
    deleted_rows = forget_published_events(session, {row.id for row in erased})
    record_audit(session, context, PRODUCER, "customer.erased", "customer", customer.id, detail={
        "reason": reason,
        "merged_customers_erased": [row.id for row in erased[1:]],
        "published_events_deleted": deleted_rows,
    })
    log.info("customer %s erased (%d merged customers with it)", customer.id, len(erased) - 1)
    return {"customer_id": customer.id, "erased_at": now.isoformat()}


def _anonymise(session, book, customer, now):
    session.execute(delete(Contact).where(Contact.customer_id == customer.id)
                    .execution_options(synchronize_session=False))
    for followup in session.execute(select(Followup).where(Followup.customer_id == customer.id)).scalars():
        followup.summary = ERASED_TEXT
        if followup.outcome is not None:
            followup.outcome = ERASED_TEXT
    for entry in session.execute(select(CustomerHistory).where(CustomerHistory.customer_id == customer.id)).scalars():
        entry.changes = {field: _scrub(change) for field, change in (entry.changes or {}).items()}
    customer.name = erased_name(customer.id)
    customer.company = {key: value for key, value in (customer.company or {}).items()
                        if key in KEPT_COMPANY_KEYS and value is not None}
    customer.contact = {}
    customer.notes = None
    customer.custom_fields = {}
    customer.erased_at = customer.updated_at = now
    # Identifiers, search text and the duplicate key follow the (now empty) details and contacts.
    book.refresh_search(customer)
    flush_versioned(session, f"Customer {customer.id}")
    changes = {field: {"old": ERASED_TEXT, "new": None}
               for field in ("name", "company", "contact", "notes", "custom_fields")}
    changes["erased_at"] = {"old": None, "new": now.isoformat()}
    book.record_history(customer, "erased", changes)
    snapshot = to_dict(customer)
    # The new snapshot renames the customer in every replica; customer.erased asks the
    # services to scrub what they hold beyond it.
    record_event(session, PRODUCER, "customer.updated", {**snapshot, "changes": changes}, book.context)
    record_event(session, PRODUCER, "customer.erased", {
        "customer_id": customer.id, "name": customer.name, "erased_at": now.isoformat(),
        "version": customer.version}, book.context)


def _scrub(change):
    """A history change with its values gone (the field name, who and when stay)."""
    if isinstance(change, dict) and set(change) <= {"old", "new"}:
        return {key: None if value is None else ERASED_TEXT for key, value in change.items()}
    return None if change is None else ERASED_TEXT


def forget_published_events(session, customer_ids, batch_size=OUTBOX_SCAN_BATCH):
    """Delete this service's already published outbox rows that carry one of ``customer_ids``
    (old snapshots with the name and phones); how many. Pending rows stay: consumers apply
    snapshots by version, so an old one arriving late does not undo the erasure."""
    return delete_published_mentioning(session, customer_ids, batch_size)
