"""Reporting's read model of customers, and the reports built on it.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
import logging

from sqlalchemy import func, select

from crm_common.consumer import first_delivery
from crm_common.context import RequestContext
from crm_common.errors import ValidationFailed
from crm_common.permissions import visibility
from crm_common.readmodel import upsert_if_newer, upsert_many_if_newer
from crm_common.validation import load

from reporting.models import CustomerFact
from reporting.schemas import LIFECYCLE_STAGES, CustomerSnapshot, ImportedCustomers, SummaryFilters

log = logging.getLogger(__name__)

SNAPSHOT_EVENTS = ("customer.created", "customer.updated", "customer.deleted")


class CustomerFacts:
    """Keeps ``customer_facts`` in step with the customers service's events.

    Events may arrive twice (skipped by event id, in the same transaction as
    the change) and in any order (the customer's ``version`` decides: a row
    only ever moves forward; an update or delete that arrives before the
    create inserts the row, and the late create is then ignored as older).
    """

    def __init__(self, session):
        self.session = session

    def apply(self, envelope):
        """Apply one customer.created/updated/deleted envelope; True if it changed the row."""
        if envelope.get("type") not in SNAPSHOT_EVENTS:
            raise ValidationFailed(f"Not a customer snapshot event: {envelope.get('type')!r}.",
                                   {"type": ["Unexpected event type."]})
        snapshot = load(CustomerSnapshot, envelope.get("data"))
        if not first_delivery(self.session, envelope):
            return False
        changed = self._apply_snapshot(snapshot, deleted=envelope["type"] == "customer.deleted")
        if not changed:
            log.info("skipping %s %s: customer %s v%s is not newer than what we hold",
                     envelope["type"], envelope["event_id"], snapshot["id"], snapshot["version"])
        return changed

    def apply_imported(self, envelope):
        """Apply customer.imported: a batch of new customers, each as customer.created carries it."""
        batch = load(ImportedCustomers, envelope.get("data"))
        if not first_delivery(self.session, envelope):
            return 0
        return upsert_many_if_newer(self.session, CustomerFact, CustomerFact.customer_id, [
            {"customer_id": snapshot["id"], **self._values(snapshot, deleted=False)}
            for snapshot in batch["customers"]])

    def _apply_snapshot(self, snapshot, deleted):
        return upsert_if_newer(self.session, CustomerFact, CustomerFact.customer_id, snapshot["id"],
                               self._values(snapshot, deleted))

    @staticmethod
    def _values(snapshot, deleted):
        return {
            "owner_id": snapshot["owner_id"],
            "owner_team_id": snapshot["owner_team_id"],
            "lifecycle_stage": snapshot["lifecycle_stage"],
            "region": snapshot["region"],
            "industry": snapshot["industry"],
            "tier": snapshot["tier"],
            "source": snapshot["source"],
            "created_at": snapshot["created_at"],
            "deleted": deleted or snapshot["deleted_at"] is not None,
            "version": snapshot["version"],
        }


def visible_to(context: RequestContext):
    """The customers this caller may count: the same rule as the customers service's records."""
    return visibility(context, CustomerFact.owner_id, CustomerFact.owner_team_id)


class Reports:
    """Report queries as one caller may run them."""

    def __init__(self, session, context: RequestContext):
        self.session = session
        self.context = context

    def customers_summary(self, filters=None):
        """Non-deleted customers the caller may see: a total and a count per lifecycle stage."""
        filters = load(SummaryFilters, filters or {})
        statement = (
            select(CustomerFact.lifecycle_stage, func.count())
            .where(CustomerFact.deleted.is_(False))
            .group_by(CustomerFact.lifecycle_stage)
        )
        condition = visible_to(self.context)
        if condition is not None:
            statement = statement.where(condition)
        for field in ("owner_team_id", "region", "industry", "tier", "source"):
            if field in filters:
                statement = statement.where(getattr(CustomerFact, field) == filters[field])
        if "owner_id" in filters:
            statement = statement.where(CustomerFact.owner_id == str(filters["owner_id"]))
        if "created_from" in filters:
            statement = statement.where(CustomerFact.created_at >= filters["created_from"])
        if "created_to" in filters:
            statement = statement.where(CustomerFact.created_at < filters["created_to"])
        by_stage = dict.fromkeys(LIFECYCLE_STAGES, 0)
        for stage, count in self.session.execute(statement):
            # A stage this service does not know yet is still counted, under its own name.
            by_stage[stage] = by_stage.get(stage, 0) + count
        return {"total": sum(by_stage.values()), "by_lifecycle_stage": by_stage}
