"""Sales' replica of the customers it sells to, and the rules later sales features rely on.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
import logging

from sqlalchemy import select, update

from crm_common.consumer import first_delivery
from crm_common.errors import ValidationFailed
from crm_common.permissions import visibility
from crm_common.readmodel import upsert_if_newer, upsert_many_if_newer
from crm_common.types import utcnow
from crm_common.validation import load

from sales.models import Contract, CustomerReplica, Opportunity, Order, Quote
from sales.schemas import CustomerAssigned, CustomerMerged, CustomerSnapshot, ImportedCustomers

log = logging.getLogger(__name__)

SNAPSHOT_EVENTS = ("customer.created", "customer.updated", "customer.deleted")
# The sales records that name a customer: a merge re-points them all.
CUSTOMER_RECORDS = (Opportunity, Quote, Order, Contract)
UNKNOWN_CUSTOMER = "Unknown or deleted customer."


class CustomerReplicaFeed:
    """Keeps ``customer_replica`` in step with the customers service's events.

    Each event is applied once (its id is recorded in the same transaction as
    the change). Snapshots (created/updated/deleted) carry the customer's
    version and are the authority: a row only ever moves to a newer version,
    and an update or delete that arrives before the create inserts the row
    (the late create is then ignored as older).
    """

    def __init__(self, session):
        self.session = session

    def apply_snapshot(self, envelope):
        """Apply customer.created/updated/deleted; True if the replica changed."""
        if envelope.get("type") not in SNAPSHOT_EVENTS:
            raise ValidationFailed(f"Not a customer snapshot event: {envelope.get('type')!r}.",
                                   {"type": ["Unexpected event type."]})
        snapshot = load(CustomerSnapshot, envelope.get("data"))
        if not first_delivery(self.session, envelope):
            return False
        return self._apply(envelope, snapshot["id"],
                           self._snapshot_values(snapshot, deleted=envelope["type"] == "customer.deleted"))

    def apply_imported(self, envelope):
        """Apply customer.imported: a batch of new customers; how many rows changed."""
        batch = load(ImportedCustomers, envelope.get("data"))
        if not first_delivery(self.session, envelope):
            return 0
        return upsert_many_if_newer(self.session, CustomerReplica, CustomerReplica.id, [
            {"id": snapshot["id"], **self._snapshot_values(snapshot, deleted=False)}
            for snapshot in batch["customers"]])

    @staticmethod
    def _snapshot_values(snapshot, deleted):
        return {
            "name": snapshot["name"],
            "owner_id": snapshot["owner_id"],
            "owner_team_id": snapshot["owner_team_id"],
            "deleted": deleted or snapshot["deleted_at"] is not None,
            "version": snapshot["version"],
        }

    def apply_assigned(self, envelope):
        """Apply customer.assigned: the customer's owner as of the version it names.

        An assignment is the owner part of the snapshot of that version, so it
        is ordered against the snapshots by the same version rule. If it
        overtakes the create, it inserts the row (a customer being assigned is
        not deleted) and the create of the same version is then skipped.
        """
        data = load(CustomerAssigned, envelope.get("data"))
        if not first_delivery(self.session, envelope):
            return False
        values = {
            "name": data["name"],
            "owner_id": data["owner_id"],
            "owner_team_id": data["owner_team_id"],
            "deleted": False,
            "version": data["version"],
        }
        return self._apply(envelope, data["customer_id"], values)

    def apply_merged(self, envelope):
        """Apply customer.merged: the source's opportunities, quotes, orders and contracts
        now belong to the target customer. How many records moved.

        Each moved record gets a new version, so a client holding the old
        ETag reloads before it writes. The source's replica row is marked
        deleted by the customer.deleted event the merge also publishes.
        """
        data = load(CustomerMerged, envelope.get("data"))
        if not first_delivery(self.session, envelope):
            log.info("skipping %s %s: already processed", envelope["type"], envelope["event_id"])
            return 0
        moved, now = 0, utcnow()
        for model in CUSTOMER_RECORDS:
            moved += self.session.execute(
                update(model).where(model.customer_id == data["source_id"])
                .values(customer_id=data["target_id"], version=model.version + 1, updated_at=now)
                .execution_options(synchronize_session=False)).rowcount
        log.info("customer %s merged into %s: %d sales records moved", data["source_id"], data["target_id"], moved)
        return moved

    def _apply(self, envelope, customer_id, values):
        changed = upsert_if_newer(self.session, CustomerReplica, CustomerReplica.id, customer_id, values)
        if not changed:
            log.info("skipping %s %s: customer %s v%s is not newer than the replica",
                     envelope["type"], envelope["event_id"], customer_id, values["version"])
        return changed


def find_active_customer(session, customer_id):
    """The replica row of a known, not deleted customer, or None."""
    if not isinstance(customer_id, str) or not customer_id:
        return None
    return session.execute(
        select(CustomerReplica).where(CustomerReplica.id == customer_id,
                                      CustomerReplica.deleted.is_(False))
    ).scalar_one_or_none()


def require_active_customer(session, customer_id):
    """The replica row of ``customer_id``; ValidationFailed (422) if unknown or deleted.

    For sales records that name a customer (opportunities, quotes, orders).
    It answers from the replica, so a customer created a moment ago may not
    be known yet: the caller's error says which field to correct.
    """
    customer = find_active_customer(session, customer_id)
    if customer is None:
        raise ValidationFailed(UNKNOWN_CUSTOMER, {"customer_id": [UNKNOWN_CUSTOMER]})
    return customer


def require_visible_customer(session, context, customer_id):
    """The replica row of ``customer_id`` if the caller may see it (its owner and team from the
    replica); else the same ValidationFailed (422) as an unknown customer.

    For every record that names a customer on the caller's behalf: nobody
    sells, quotes or contracts to a customer they may not see, and the answer
    for another owner's customer is exactly the one for a missing id, so it
    tells nothing about which customers exist.
    """
    customer = require_active_customer(session, customer_id)
    condition = visibility(context, CustomerReplica.owner_id, CustomerReplica.owner_team_id)
    if condition is not None and session.execute(
            select(CustomerReplica.id).where(CustomerReplica.id == customer.id, condition)).first() is None:
        raise ValidationFailed(UNKNOWN_CUSTOMER, {"customer_id": [UNKNOWN_CUSTOMER]})
    return customer


def customer_known(session, customer_id):
    return find_active_customer(session, customer_id) is not None
