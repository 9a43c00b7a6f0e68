"""Keeping the read models in step with the other services' events.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.

Events arrive at least once and in any order (each type has its own queue):
- an event id is recorded with its effect (``first_delivery``, same
  transaction), so a redelivery is a no-op;
- a versioned record (customer, order, opportunity, contract) only moves to a
  newer version, so a late older event changes nothing, and an event that
  overtakes the create inserts the row;
- immutable records (order lines, follow-ups, stage changes) are inserted if
  absent.

``Ingest`` writes lists of records, so an event (one record, or an import's
batch) and a rebuild page (hundreds) go through the same code. A rebuild
passes ``rebuild=True``: the source's copy then also wins at an equal version,
and immutable rows it reads are rewritten, so every row it saw gets a fresh
``refreshed_at`` (the rebuild's final sweep removes the ones it did not see).

The rollups the hot reports read (reporting.rollups) follow every write made
here in the same transaction: triggers on the fact tables subtract a row's old
contribution and add its new one. A write the version guard refuses changes no
row, so it changes no rollup either; a merge changes only ``customer_id``, which
no rollup is keyed by.
"""
import logging
from datetime import datetime, timezone

from sqlalchemy import func, select, update

from crm_common.consumer import first_delivery
from crm_common.errors import ValidationFailed
from crm_common.metrics import call_after_commit
from crm_common.readmodel import dialect_insert, insert_many, upsert_many_if_newer
from crm_common.types import utcnow
from crm_common.validation import load

from reporting import ingest_schemas as schemas
from reporting.metrics import EVENT_LAG
from reporting.models import (
    ContractFact, CustomerFact, CustomerLastFollowup, CustomerMerge, FollowupFact, OpportunityFact, OrderFact,
    OrderLineFact, StageChangeFact,
)

# The facts that belong to a customer, and so move with it when it is merged into another.
CUSTOMER_OWNED_FACTS = (OrderFact, OrderLineFact, OpportunityFact, ContractFact, FollowupFact)

log = logging.getLogger(__name__)

# An order counts as a sale once confirmed, unless cancelled.
NOT_COUNTED_STATUSES = ("draft", "cancelled")
# Stages an opportunity moves forward through (a lost stage is a way out, not a step).
FORWARD_OUTCOMES = ("open", "won")


def utc_day(moment):
    return moment.astimezone(timezone.utc).date() if moment is not None else None


class Ingest:
    """Writes loaded records (dicts as ``reporting.ingest_schemas`` reads them) into the facts."""

    def __init__(self, session, rebuild=False, now=None):
        self.session = session
        self.rebuild = rebuild
        self.now = now or utcnow()

    def _upsert(self, model, key_column, rows):
        changed = upsert_many_if_newer(self.session, model, key_column, rows, at_least_as_new=self.rebuild)
        if self.rebuild and rows:
            # A row the rebuild read but did not overwrite (we already hold a newer version)
            # still exists at the source: mark it seen, or the final sweep would remove it.
            self.session.execute(
                update(model).where(key_column.in_([row[key_column.key] for row in rows]))
                .values(refreshed_at=self.now).execution_options(synchronize_session=False))
        return changed

    # --- customers -----------------------------------------------------------------

    def merge(self, source_id, target_id):
        """customer.merged: the source's facts move to the target, and so will any that arrive later."""
        self.session.execute(
            update(CustomerMerge).where(CustomerMerge.target_id == source_id)
            .values(target_id=target_id).execution_options(synchronize_session=False))
        insert_many(self.session, CustomerMerge, [
            {"source_id": source_id, "target_id": target_id, "merged_at": self.now}], ["source_id"])
        for model in CUSTOMER_OWNED_FACTS:
            self.session.execute(
                update(model).where(model.customer_id == source_id)
                .values(customer_id=target_id).execution_options(synchronize_session=False))
        source_last = self.session.execute(select(CustomerLastFollowup.last_followup_at).where(
            CustomerLastFollowup.customer_id == source_id)).scalar_one_or_none()
        if source_last is not None:
            self._last_followups([{"customer_id": target_id, "occurred_at": source_last}])
            refresh_last_contact(self.session, {target_id})

    def _of_surviving_customers(self, records):
        """``records`` with the customer_id of a merged customer replaced by the one it was merged into."""
        ids = {record["customer_id"] for record in records}
        if not ids:
            return records
        merged_into = dict(self.session.execute(
            select(CustomerMerge.source_id, CustomerMerge.target_id).where(CustomerMerge.source_id.in_(ids))).all())
        if not merged_into:
            return records
        return [{**record, "customer_id": merged_into.get(record["customer_id"], record["customer_id"])}
                for record in records]

    def customers(self, snapshots, deleted=False):
        """Customers as their newest version describes them; ``deleted`` for customer.deleted."""
        changed = self._upsert(CustomerFact, CustomerFact.customer_id, [
            self._customer_row(snapshot, deleted) for snapshot in snapshots])
        refresh_last_contact(self.session, {snapshot["id"] for snapshot in snapshots})
        return changed

    def _customer_row(self, snapshot, deleted):
        churned_at = (snapshot["lifecycle_dates"] or {}).get("churned")
        return {
            "customer_id": snapshot["id"],
            "name": snapshot["name"],
            "owner_id": snapshot["owner_id"],
            "owner_team_id": snapshot["owner_team_id"],
            "lifecycle_stage": snapshot["lifecycle_stage"],
            "region": snapshot["region"],
            "industry": snapshot["industry"],
            "tier": snapshot["tier"],
            "source": snapshot["source"],
            "created_at": snapshot["created_at"],
            "created_on": utc_day(snapshot["created_at"]),
            # Only a customer churned now counts as churned, on the day it last became so.
            "churned_on": utc_day(churned_at) if snapshot["lifecycle_stage"] == "churned" else None,
            "deleted": deleted or snapshot["deleted_at"] is not None,
            "version": snapshot["version"],
            "refreshed_at": self.now,
        }

    def followups(self, followups):
        followups = self._of_surviving_customers(followups)
        rows = [{
            "followup_id": followup["id"],
            "customer_id": followup["customer_id"],
            "owner_id": followup["owner_id"],
            "owner_team_id": followup["owner_team_id"],
            "logged_by": followup["logged_by"],
            "type": followup["type"],
            "occurred_at": followup["occurred_at"],
            "occurred_on": utc_day(followup["occurred_at"]),
            "refreshed_at": self.now,
        } for followup in followups]
        written = insert_many(self.session, FollowupFact, rows, ["followup_id"], overwrite=self.rebuild)
        self._last_followups(rows)
        refresh_last_contact(self.session, {row["customer_id"] for row in rows})
        return written

    def _last_followups(self, rows):
        newest = {}
        for row in rows:
            if row["customer_id"] not in newest or newest[row["customer_id"]] < row["occurred_at"]:
                newest[row["customer_id"]] = row["occurred_at"]
        if not newest:
            return
        insert = dialect_insert(self.session)
        statement = insert(CustomerLastFollowup).values([
            {"customer_id": customer_id, "last_followup_at": at} for customer_id, at in newest.items()])
        table = CustomerLastFollowup.__table__
        # The newest follow-up wins whatever the arrival order.
        statement = statement.on_conflict_do_update(
            index_elements=["customer_id"],
            set_={"last_followup_at": statement.excluded.last_followup_at},
            where=table.c.last_followup_at < statement.excluded.last_followup_at)
        self.session.execute(statement.execution_options(synchronize_session=False))

    # --- orders ----------------------------------------------------------------------

    def orders(self, orders):
        """Orders (with their lines) as the newest version describes them."""
        orders = self._of_surviving_customers(orders)
        regions = self._customer_regions(orders)
        changed = self._upsert(OrderFact, OrderFact.order_id, [
            self._order_row(order, regions) for order in orders])
        self._order_lines(orders)
        return changed

    def _customer_regions(self, orders):
        """{customer id: region} for the orders' customers, on SQLite only: there a trigger cannot
        give an inserted order its region (reporting.rollups, region copy); PostgreSQL's does."""
        if self.session.get_bind().dialect.name != "sqlite" or not orders:
            return None
        return dict(self.session.execute(select(CustomerFact.customer_id, CustomerFact.region).where(
            CustomerFact.customer_id.in_({order["customer_id"] for order in orders}))).all())

    def _order_row(self, order, regions=None):
        extra = {} if regions is None else {"customer_region": regions.get(order["customer_id"])}
        return {
            **extra,
            "order_id": order["id"],
            "customer_id": order["customer_id"],
            "owner_id": order["owner_id"],
            "owner_team_id": order["owner_team_id"],
            "status": order["status"],
            "counted": order["status"] not in NOT_COUNTED_STATUSES,
            "currency": order["currency"],
            "total": order["total"],
            "paid_amount": order["paid_amount"] or 0,
            "placed_at": order["confirmed_at"],
            "placed_on": utc_day(order["confirmed_at"]),
            "version": order["version"],
            "refreshed_at": self.now,
        }

    def _order_lines(self, orders):
        """Lines are written once, from whichever event carries them first; the copied order
        columns come from the order row as it stands now (a late older event copies the newer row)."""
        ids = list({order["id"] for order in orders})
        if not ids:
            return
        current = {row.order_id: row for row in self.session.execute(
            select(OrderFact.order_id, OrderFact.customer_id, OrderFact.owner_id, OrderFact.owner_team_id,
                   OrderFact.counted, OrderFact.placed_on, OrderFact.currency)
            .where(OrderFact.order_id.in_(ids)))}
        rows, seen = [], set()
        for order in orders:
            if order["id"] in seen:
                continue
            seen.add(order["id"])
            copies = self._line_copies(current[order["id"]])
            for line in order["lines"]:
                rows.append({
                    "order_id": order["id"],
                    "position": line["position"],
                    "product_id": line["product_id"],
                    "sku": line["sku"],
                    "description": line["description"],
                    "quantity": line["quantity"],
                    "total": line["total"],
                    "currency": current[order["id"]].currency,
                    **copies,
                    "refreshed_at": self.now,
                })
        insert_many(self.session, OrderLineFact, rows, ["order_id", "position"], overwrite=self.rebuild)
        # Lines already stored take the order's current status, owner and day: one
        # UPDATE ... FROM for the whole batch (PostgreSQL, SQLite >= 3.33).
        self.session.execute(
            update(OrderLineFact)
            .where(OrderLineFact.order_id == OrderFact.order_id, OrderFact.order_id.in_(ids))
            .values(customer_id=OrderFact.customer_id, owner_id=OrderFact.owner_id,
                    owner_team_id=OrderFact.owner_team_id, counted=OrderFact.counted,
                    placed_on=OrderFact.placed_on, refreshed_at=self.now)
            .execution_options(synchronize_session=False))

    @staticmethod
    def _line_copies(order_row):
        return {
            "customer_id": order_row.customer_id,
            "owner_id": order_row.owner_id,
            "owner_team_id": order_row.owner_team_id,
            "counted": order_row.counted,
            "placed_on": order_row.placed_on,
        }

    # --- opportunities and stage changes -----------------------------------------

    def opportunities(self, opportunities):
        opportunities = self._of_surviving_customers(opportunities)
        changed = self._upsert(OpportunityFact, OpportunityFact.opportunity_id, [{
            "opportunity_id": opportunity["id"],
            "customer_id": opportunity["customer_id"],
            "owner_id": opportunity["owner_id"],
            "owner_team_id": opportunity["owner_team_id"],
            "pipeline_id": opportunity["pipeline_id"],
            "stage": opportunity["stage"],
            "stage_position": opportunity["stage_position"],
            "status": opportunity["status"],
            "amount": opportunity["amount"],
            "currency": opportunity["currency"],
            "probability": opportunity["probability"] or 0,
            "expected_close_date": opportunity["expected_close_date"],
            "created_at": opportunity["created_at"],
            "closed_at": opportunity["closed_at"],
            "version": opportunity["version"],
            "refreshed_at": self.now,
        } for opportunity in opportunities])
        self._insert_stage_changes([o["stage_change"] for o in opportunities if o.get("stage_change")])
        self._refresh_opportunity_copies({opportunity["id"] for opportunity in opportunities})
        return changed

    def stage_changes(self, changes):
        written = self._insert_stage_changes(changes)
        self._refresh_opportunity_copies({change["opportunity_id"] for change in changes})
        return written

    def _refresh_opportunity_copies(self, opportunity_ids):
        """Whatever arrived first, an opportunity's changes carry its creation time and current owner,
        and the opportunity the furthest open-or-won position its changes reached."""
        if not opportunity_ids:
            return
        ids = sorted(opportunity_ids)
        self.session.execute(
            update(StageChangeFact)
            .where(StageChangeFact.opportunity_id == OpportunityFact.opportunity_id,
                   OpportunityFact.opportunity_id.in_(ids))
            .values(opportunity_created_at=OpportunityFact.created_at, owner_id=OpportunityFact.owner_id,
                    owner_team_id=OpportunityFact.owner_team_id)
            .execution_options(synchronize_session=False))
        furthest = (select(func.max(StageChangeFact.to_stage_position))
                    .where(StageChangeFact.opportunity_id == OpportunityFact.opportunity_id,
                           StageChangeFact.to_outcome.in_(FORWARD_OUTCOMES))
                    .scalar_subquery())
        self.session.execute(
            update(OpportunityFact).where(OpportunityFact.opportunity_id.in_(ids))
            .values(furthest_position=furthest).execution_options(synchronize_session=False))

    def _insert_stage_changes(self, changes):
        return insert_many(self.session, StageChangeFact, [{
            "stage_change_id": change["stage_change_id"],
            "opportunity_id": change["opportunity_id"],
            "pipeline_id": change["pipeline_id"],
            "owner_id": change["owner_id"],
            "owner_team_id": change["owner_team_id"],
            "from_stage": change["from_stage"],
            "to_stage": change["to_stage"],
            "to_stage_position": change["to_stage_position"],
            "to_outcome": change["to_outcome"],
            "changed_at": change["changed_at"],
            "seconds_in_previous_stage": change["seconds_in_previous_stage"],
            "refreshed_at": self.now,
        } for change in changes], ["stage_change_id"], overwrite=self.rebuild)

    # --- contracts -------------------------------------------------------------------

    def contracts(self, contracts):
        contracts = self._of_surviving_customers(contracts)
        return self._upsert(ContractFact, ContractFact.contract_id, [{
            "contract_id": contract["id"],
            "customer_id": contract["customer_id"],
            "owner_id": contract["owner_id"],
            "owner_team_id": contract["owner_team_id"],
            "title": contract["title"],
            "status": contract["status"],
            "value": contract["value"],
            "currency": contract["currency"],
            "start_date": contract["start_date"],
            "end_date": contract["end_date"],
            "version": contract["version"],
            "refreshed_at": self.now,
        } for contract in contracts])


def refresh_last_contact(session, customer_ids=None):
    """Copy each customer's newest follow-up (or, without one, its creation) onto customer_facts;
    every customer when ``customer_ids`` is None."""
    newest = (select(CustomerLastFollowup.last_followup_at)
              .where(CustomerLastFollowup.customer_id == CustomerFact.customer_id).scalar_subquery())
    statement = update(CustomerFact).values(last_contact_at=func.coalesce(newest, CustomerFact.created_at))
    if customer_ids is not None:
        if not customer_ids:
            return
        statement = statement.where(CustomerFact.customer_id.in_(sorted(customer_ids)))
    session.execute(statement.execution_options(synchronize_session=False))


# --- what each kind of record is read with and written by (events and rebuild pages) ---

KINDS = {
    "customers": (schemas.CustomerSnapshot, Ingest.customers),
    "followups": (schemas.FollowupSnapshot, Ingest.followups),
    "orders": (schemas.OrderSnapshot, Ingest.orders),
    "opportunities": (schemas.OpportunitySnapshot, Ingest.opportunities),
    "stage_changes": (schemas.StageChangeSnapshot, Ingest.stage_changes),
    "contracts": (schemas.ContractSnapshot, Ingest.contracts),
}


def ingest_page(session, kind, items, now=None):
    """Write one rebuild page of ``kind`` (the source's copy wins); returns how many items it held."""
    schema, write = KINDS[kind]
    records = []
    for item in items:
        try:
            records.append(load(schema, item))
        except ValidationFailed as error:
            record_id = item.get("id") or item.get("stage_change_id") if isinstance(item, dict) else None
            raise ValidationFailed(f"The source's {kind} record {record_id} could not be read: {error.errors}",
                                   error.errors) from error
    write(Ingest(session, rebuild=True, now=now), records)
    return len(items)


def _kind_of(event_type):
    if event_type in ("customer.created", "customer.updated", "customer.deleted", "customer.imported"):
        return "customers"
    prefix = event_type.split(".", 1)[0]
    return {"followup": "followups", "order": "orders", "opportunity": "opportunities",
            "contract": "contracts"}.get(prefix)


def apply_event(session, envelope):
    """Apply one consumed event to the facts; False when it was a redelivery.

    The data is validated first: an event reporting cannot read is refused
    (ValidationFailed, so the consumer dead-letters it at once) rather than
    recorded as processed.
    """
    event_type = envelope.get("type") or ""
    if event_type == "customer.merged":
        return _apply_merge(session, envelope)
    kind = _kind_of(event_type)
    if kind is None or (kind == "followups" and event_type != "followup.logged"):
        raise ValidationFailed(f"Reporting does not read {event_type!r} events.",
                               {"type": ["Unexpected event type."]})
    schema, write = KINDS[kind]
    if event_type == "customer.imported":
        records = load(schemas.ImportedCustomers, envelope.get("data"))["customers"]
    else:
        records = [load(schema, envelope.get("data"))]
    if not first_delivery(session, envelope):
        return False
    ingest = Ingest(session)
    if event_type == "customer.deleted":
        ingest.customers(records, deleted=True)
    else:
        write(ingest, records)
    _observe_lag_at_commit(session, envelope)
    return True


def _apply_merge(session, envelope):
    merged = load(schemas.CustomerMerged, envelope.get("data"))
    if not first_delivery(session, envelope):
        return False
    Ingest(session).merge(merged["source_id"], merged["target_id"])
    _observe_lag_at_commit(session, envelope)
    return True


def _observe_lag_at_commit(session, envelope):
    try:
        occurred_at = datetime.fromisoformat(envelope["occurred_at"])
    except (KeyError, TypeError, ValueError):
        return  # no usable timestamp: nothing to measure
    if occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=timezone.utc)
    child = EVENT_LAG.labels(envelope["type"])
    call_after_commit(session, lambda: child.observe(max(0.0, (utcnow() - occurred_at).total_seconds())))
