"""A person's data rights in sales: what sales holds about a customer, and scrubbing it on erasure.

Orders, their lines, payments and amounts stay (accounting needs them), as do
opportunities, quotes and contracts with their figures, dates and statuses.
What goes, on ``customer.erased``, is the free text people typed about the
customer, which may name them: opportunity titles, next steps and lost
reasons, stage-change and contract status-change notes, quote and order
notes, rejection, cancellation and termination reasons, and contract titles.
Each becomes "[erased]" (an empty one stays empty); each scrubbed record gets
a new version, so a client holding the old ETag reloads before it writes.

Kept on purpose: order and quote line descriptions (what was sold, usually
the product's text), payment references (bank reconciliation), contract
renewal terms and attachments (the contract itself, kept for legal
obligations), price-list assignments (commercial terms). The customer
replica's name is renamed by the customer.updated snapshot the erasure also
publishes; the handler here renames it too, in case customer.erased arrives
first. Already published outbox rows that name the customer are deleted.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
import logging

from sqlalchemy import case, select, update

from crm_common.consumer import first_delivery
from crm_common.errors import Forbidden
from crm_common.outbox import delete_published_mentioning
from crm_common.types import utcnow
from crm_common.validation import load

from sales.contracts import attachment_out, change_out, to_dict as contract_dict
from sales.models import (
    Contract, ContractAttachment, ContractStatusChange, CustomerReplica, Opportunity, OpportunityStageChange,
    Order, Payment, PipelineStage, PriceListCustomer, Quote,
)
from sales.orders import payment_out, to_dict as order_dict
from sales.pipeline import opportunity_out
from sales.quotes import quote_out
from sales.schemas import CustomerErased

log = logging.getLogger(__name__)

ERASED_TEXT = "[erased]"

# model -> the free-text columns scrubbed on erasure (records of the customer, by customer_id).
SCRUBBED = {
    Opportunity: ("title", "next_step", "lost_reason"),
    Quote: ("notes", "rejected_reason"),
    Order: ("notes", "cancel_reason"),
    Contract: ("title", "rejected_reason", "termination_reason"),
}


def personal_data(session, context, customer_id):
    """Everything sales holds about the customer: {"customer_replica", "opportunities", "quotes",
    "orders", "contracts", "price_list_id"} (orders with lines and payments, opportunities with
    their stage changes, contracts with status changes and attachment metadata)."""
    if not context.is_admin:
        raise Forbidden("Only admins handle personal data requests.")
    customer_id = str(customer_id)
    replica = session.get(CustomerReplica, customer_id)
    return {
        "customer_replica": None if replica is None else {
            "id": replica.id, "name": replica.name, "owner_id": replica.owner_id, "deleted": replica.deleted,
            "version": replica.version},
        "opportunities": _opportunities(session, customer_id),
        "quotes": [quote_out.dump(row) for row in _of_customer(session, Quote, customer_id)],
        "orders": _orders(session, customer_id),
        "contracts": _contracts(session, customer_id),
        "price_list_id": session.execute(select(PriceListCustomer.price_list_id).where(
            PriceListCustomer.customer_id == customer_id)).scalar_one_or_none(),
    }


def _of_customer(session, model, customer_id):
    return session.execute(select(model).where(model.customer_id == customer_id)
                           .order_by(model.created_at, model.id)).scalars().all()


def _opportunities(session, customer_id):
    rows = _of_customer(session, Opportunity, customer_id)
    stages = {stage.id: stage.key for stage in session.execute(select(PipelineStage)).scalars()} if rows else {}
    result = []
    for row in rows:
        changes = session.execute(select(OpportunityStageChange).where(
            OpportunityStageChange.opportunity_id == row.id).order_by(OpportunityStageChange.id)).scalars()
        result.append({**opportunity_out.dump(row), "stage": stages.get(row.stage_id), "stage_changes": [
            {"from_stage": stages.get(change.from_stage_id), "to_stage": stages.get(change.to_stage_id),
             "note": change.note, "changed_by": change.changed_by, "changed_at": change.changed_at.isoformat()}
            for change in changes]})
    return result


def _orders(session, customer_id):
    result = []
    for row in _of_customer(session, Order, customer_id):
        payments = session.execute(select(Payment).where(Payment.order_id == row.id)
                                   .order_by(Payment.paid_at, Payment.id)).scalars()
        result.append({**order_dict(row), "payments": [payment_out.dump(payment) for payment in payments]})
    return result


def _contracts(session, customer_id):
    result = []
    for row in _of_customer(session, Contract, customer_id):
        changes = session.execute(select(ContractStatusChange).where(
            ContractStatusChange.contract_id == row.id).order_by(ContractStatusChange.id)).scalars()
        attachments = session.execute(select(ContractAttachment).where(
            ContractAttachment.contract_id == row.id).order_by(ContractAttachment.uploaded_at)).scalars()
        result.append({**contract_dict(row), "status_changes": [change_out.dump(change) for change in changes],
                       "attachments": [attachment_out.dump(attachment) for attachment in attachments]})
    return result


def scrub_customer(session, envelope):
    """Apply customer.erased once: scrub the customer's free text (see the module docstring).
    Returns how many records were scrubbed, or None for a redelivery."""
    data = load(CustomerErased, envelope.get("data"))
    if not first_delivery(session, envelope):
        return None
    customer_id, now, scrubbed = data["customer_id"], utcnow(), 0
    for model, columns in SCRUBBED.items():
        values = {column: _erased(getattr(model, column)) for column in columns}
        scrubbed += session.execute(
            update(model).where(model.customer_id == customer_id)
            .values(**values, version=model.version + 1, updated_at=now)
            .execution_options(synchronize_session=False)).rowcount
    opportunity_ids = select(Opportunity.id).where(Opportunity.customer_id == customer_id)
    session.execute(update(OpportunityStageChange).where(
        OpportunityStageChange.opportunity_id.in_(opportunity_ids), OpportunityStageChange.note.is_not(None))
        .values(note=ERASED_TEXT).execution_options(synchronize_session=False))
    contract_ids = select(Contract.id).where(Contract.customer_id == customer_id)
    session.execute(update(ContractStatusChange).where(
        ContractStatusChange.contract_id.in_(contract_ids), ContractStatusChange.note.is_not(None))
        .values(note=ERASED_TEXT).execution_options(synchronize_session=False))
    if data["name"]:
        session.execute(update(CustomerReplica).where(CustomerReplica.id == customer_id)
                        .values(name=data["name"]).execution_options(synchronize_session=False))
    forgotten = delete_published_mentioning(session, [customer_id])
    log.info("customer %s erased: %d sales records scrubbed, %d published events deleted",
             customer_id, scrubbed, forgotten)
    return scrubbed


def _erased(column):
    """"[erased]" where there was text; an empty column stays empty."""
    return case((column.is_(None), None), else_=ERASED_TEXT)
