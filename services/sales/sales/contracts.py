"""Contracts: who may see and change them, their lifecycle, their files and their expiry.

draft → pending_approval (submit) → approved (approve) | draft (reject)
approved → signed (sign) → active (on its start date) → expired (after its end date)
signed | active → terminated (terminate)

Every change of status is a ContractStatusChange row and an event, written
in the caller's transaction. Plain Python over a SQLAlchemy session; nothing
here knows about nameko.
"""
import base64
import binascii
import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import timedelta, timezone

from sqlalchemy import select, update

from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from crm_common.metrics import count_after_commit
from crm_common.outbox import record_event
from crm_common.pagination import keyset_page
from crm_common.permissions import visibility
from crm_common.types import utcnow
from crm_common.validation import load
from crm_common.versioning import check_version, flush_versioned

from sales import storage
from sales.contract_schemas import (
    FILE_SIZE, MAX_ATTACHMENT_BYTES, AttachmentOut, AttachmentUpload, ContractCreate, ContractFilters, ContractOut,
    ContractUpdate, END_NOT_AFTER_START, ExpiryCheckOut, ReasonRequest, SignRequest, StatusChangeOut,
)
from sales.documents import SalesRecords
from sales.domain import require_visible_customer
from sales.money import round_money
from sales.metrics import CONTRACTS_SIGNED
from sales.models import Contract, ContractAttachment, ContractStatusChange, Order

log = logging.getLogger(__name__)

PRODUCER = "sales"
# Days before the end date at which contract.expiring goes out, each once.
EXPIRY_NOTICE_DAYS = (30, 7, 1)
LIVE_STATUSES = ("signed", "active")


@dataclass(frozen=True)
class Transition:
    from_statuses: tuple
    to_status: str
    event: str


# The whole state machine. The keys are the actions; submit, approve, reject,
# sign and terminate are users' (routes), activate and expire the daily check's.
TRANSITIONS = {
    "submit": Transition(("draft",), "pending_approval", "contract.submitted"),
    "approve": Transition(("pending_approval",), "approved", "contract.approved"),
    "reject": Transition(("pending_approval",), "draft", "contract.rejected"),
    "sign": Transition(("approved",), "signed", "contract.signed"),
    "activate": Transition(("signed",), "active", "contract.activated"),
    "terminate": Transition(LIVE_STATUSES, "terminated", "contract.terminated"),
    "expire": Transition(LIVE_STATUSES, "expired", "contract.expired"),
}
USER_ACTIONS = ("submit", "approve", "reject", "sign", "terminate")

contract_out = ContractOut()
change_out = StatusChangeOut()
attachment_out = AttachmentOut()


def to_dict(contract):
    return contract_out.dump(contract)


def allowed_actions(status):
    """What a user can do next with a contract in ``status`` (edit and delete files only in draft)."""
    actions = [action for action in USER_ACTIONS if status in TRANSITIONS[action].from_statuses]
    return (["edit"] if status == "draft" else []) + actions


def illegal(contract, doing):
    allowed = allowed_actions(contract.status)
    return Conflict(
        f"Contract {contract.id} is {contract.status}: it cannot be {doing} now. "
        f"Allowed now: {', '.join(allowed) or 'nothing'}.",
        extra={"current_status": contract.status, "allowed_actions": allowed})


def event_data(contract, **extra):
    """What every contract event carries: the contract as GET shows it (ids, owner, team, value as a
    string, currency, dates, status), plus what is particular to the event."""
    return {**to_dict(contract), **extra}


class Contracts(SalesRecords):
    """The contracts as one caller may use them."""

    model = Contract
    noun = "contract"

    def __init__(self, session, context, store=None):
        super().__init__(session, context)
        self.store = store

    # --- reading ---------------------------------------------------------

    def get(self, contract_id):
        return to_dict(self.find(contract_id))

    def list(self, filters=None, limit=None, cursor=None):
        filters = load(ContractFilters, filters or {})
        statement = select(Contract)
        if "ending_before" in filters:
            statement = statement.where(Contract.end_date <= filters.pop("ending_before"))
        if "ending_after" in filters:
            statement = statement.where(Contract.end_date >= filters.pop("ending_after"))
        rows, next_cursor = self.page(statement, filters, limit, cursor)
        return {"items": [to_dict(row) for row in rows], "next_cursor": next_cursor}

    def history(self, contract_id, limit=None, cursor=None):
        """Every change of status, newest first."""
        contract = self.find(contract_id)
        statement = select(ContractStatusChange).where(ContractStatusChange.contract_id == contract.id)
        rows, next_cursor = keyset_page(self.session, statement, ContractStatusChange.id,
                                        ContractStatusChange.id, True, limit, cursor)
        return {"items": [change_out.dump(row) for row in rows], "next_cursor": next_cursor}

    # --- writing a draft -------------------------------------------------

    def create(self, data, owner_team_id=None):
        self.require_writer()
        data = load(ContractCreate, data)
        owner_id, owner_team_id = self.owner(data.pop("owner_id", None), owner_team_id)
        require_visible_customer(self.session, self.context, data["customer_id"])
        self._check_order(data.get("order_id"), data["customer_id"])
        data["value"] = round_money(data["value"], data["currency"])
        now = utcnow()
        contract = Contract(**data, status="draft", owner_id=owner_id, owner_team_id=owner_team_id,
                            created_by=self.context.user_id, created_at=now, updated_at=now)
        self.session.add(contract)
        self.session.flush()
        self._record_change(contract, None, "draft", None, now)
        # Drafts are events too: reporting counts contracts by status, drafts included.
        record_event(self.session, PRODUCER, "contract.created", event_data(contract), self.context)
        return to_dict(contract)

    def update(self, contract_id, changes, expected_version=None):
        self.require_writer()
        changes = load(ContractUpdate, changes)
        contract = self.find(contract_id, lock=True)
        check_version(contract, expected_version, f"Contract {contract_id}")
        if contract.status != "draft":
            raise illegal(contract, "edited")
        if "value" in changes or "currency" in changes:
            changes["value"] = round_money(changes.get("value", contract.value),
                                           changes.get("currency", contract.currency))
        changes = {field: value for field, value in changes.items() if getattr(contract, field) != value}
        if not changes:
            # Saving what is already there changes nothing: no new version.
            return to_dict(contract)
        start = changes.get("start_date", contract.start_date)
        if changes.get("end_date", contract.end_date) <= start:
            raise ValidationFailed("The input is not valid.", {"end_date": [END_NOT_AFTER_START]})
        customer_id = changes.get("customer_id", contract.customer_id)
        if "customer_id" in changes:
            require_visible_customer(self.session, self.context, customer_id)
        if "customer_id" in changes or "order_id" in changes:
            self._check_order(changes.get("order_id", contract.order_id), customer_id)
        for field, value in changes.items():
            setattr(contract, field, value)
        contract.updated_at = utcnow()
        flush_versioned(self.session, f"Contract {contract_id}")
        # A draft's value, dates or customer change what reporting shows: say so.
        record_event(self.session, PRODUCER, "contract.updated",
                     event_data(contract, changes=sorted(changes)), self.context)
        return to_dict(contract)

    def _check_order(self, order_id, customer_id):
        """A contract may name one of its customer's orders that the caller may see."""
        if order_id is None:
            return
        statement = select(Order.customer_id).where(Order.id == order_id)
        condition = visibility(self.context, Order.owner_id, Order.owner_team_id)
        statement = statement if condition is None else statement.where(condition)
        order_customer = self.session.execute(statement).scalar_one_or_none()
        if order_customer is None:
            raise ValidationFailed("Unknown order.", {"order_id": ["Unknown order."]})
        if order_customer != customer_id:
            raise ValidationFailed("The order is another customer's.",
                                   {"order_id": ["The order belongs to another customer."]})

    # --- the lifecycle ---------------------------------------------------

    def submit(self, contract_id):
        self.require_writer()
        contract = self.find(contract_id, lock=True)
        return to_dict(self._move(contract, "submit"))

    def approve(self, contract_id):
        contract = self.find(contract_id, lock=True)
        self._require_approver(contract)
        if contract.created_by is not None and contract.created_by == self.context.user_id:
            raise Forbidden("You wrote this contract: another manager of the team or an admin approves it.")
        self._check_can(contract, "approve")
        contract.approved_by = self.context.user_id
        contract.approved_at = utcnow()
        contract.rejected_reason = None
        return to_dict(self._move(contract, "approve"))

    def reject(self, contract_id, data):
        reason = load(ReasonRequest, data)["reason"]
        contract = self.find(contract_id, lock=True)
        self._require_approver(contract)
        self._check_can(contract, "reject")
        contract.rejected_reason = reason
        return to_dict(self._move(contract, "reject", note=reason, reason=reason))

    def sign(self, contract_id, data=None, today=None):
        self.require_writer()
        signed_at = load(SignRequest, data or {})["signed_at"]
        signed_at = signed_at.astimezone(timezone.utc) if signed_at else utcnow()
        contract = self.find(contract_id, lock=True)
        self._check_can(contract, "sign")
        contract.signed_at = signed_at
        self._move(contract, "sign")
        count_after_commit(self.session, CONTRACTS_SIGNED)
        # A contract whose term has begun is in force from its signature; one
        # that starts later is activated by the daily check on its start date.
        if contract.start_date <= (today or utcnow().date()):
            self._move(contract, "activate")
        return to_dict(contract)

    def terminate(self, contract_id, data):
        self.require_writer()
        reason = load(ReasonRequest, data)["reason"]
        contract = self.find(contract_id, lock=True)
        self._check_can(contract, "terminate")
        contract.terminated_at = utcnow()
        contract.termination_reason = reason
        return to_dict(self._move(contract, "terminate", note=reason, reason=reason))

    def _require_approver(self, contract):
        """Admins approve any contract; a manager those of their own team."""
        if self.context.is_admin:
            return
        if (self.context.role == "manager" and self.context.team_id is not None
                and self.context.team_id == contract.owner_team_id):
            return
        raise Forbidden("Only a manager of the owner's team or an admin may approve or reject this contract.")

    @staticmethod
    def _check_can(contract, action):
        transition = TRANSITIONS[action]
        if contract.status not in transition.from_statuses:
            raise illegal(contract, transition.event.split(".", 1)[1])  # "contract.signed": signed

    def _move(self, contract, action, note=None, **extra):
        self._check_can(contract, action)
        transition = TRANSITIONS[action]
        now = utcnow()
        previous = contract.status
        contract.status = transition.to_status
        contract.updated_at = now
        flush_versioned(self.session, f"Contract {contract.id}")
        self._record_change(contract, previous, transition.to_status, note, now)
        record_event(self.session, PRODUCER, transition.event, event_data(contract, **extra), self.context)
        return contract

    def _record_change(self, contract, from_status, to_status, note, when):
        self.session.add(ContractStatusChange(contract_id=contract.id, from_status=from_status, to_status=to_status,
                                              note=note, changed_by=self.context.user_id, changed_at=when))
        self.session.flush()

    # --- attachments -----------------------------------------------------

    def add_attachment(self, contract_id, content_base64, file_name, content_type=None):
        """Store a file of the contract (in any status: a signed scan comes after signing)."""
        self.require_writer()
        content = decode_content(content_base64)
        if not 0 < len(content) <= MAX_ATTACHMENT_BYTES:
            raise ValidationFailed("The file is empty or too large.", {"file": [FILE_SIZE]})
        meta = load(AttachmentUpload, {"file_name": clean_file_name(file_name),
                                       **({"content_type": content_type} if content_type else {})})
        contract = self.find(contract_id)
        key = storage.new_key()
        self.store.put(key, content)
        storage.delete_after_rollback(self.session, self.store, key)
        attachment = ContractAttachment(
            contract_id=contract.id, file_name=meta["file_name"], content_type=meta["content_type"],
            size=len(content), checksum=hashlib.sha256(content).hexdigest(), storage_key=key,
            uploaded_by=self.context.user_id, uploaded_at=utcnow())
        self.session.add(attachment)
        self.session.flush()
        return attachment_out.dump(attachment)

    def list_attachments(self, contract_id):
        contract = self.find(contract_id)
        rows = self.session.execute(select(ContractAttachment).where(ContractAttachment.contract_id == contract.id)
                                    .order_by(ContractAttachment.uploaded_at, ContractAttachment.id)).scalars()
        return {"items": [attachment_out.dump(row) for row in rows]}

    def attachment_content(self, contract_id, attachment_id):
        """The file's metadata and its bytes (base64), checked against the checksum taken at upload."""
        attachment = self._find_attachment(self.find(contract_id), attachment_id)
        try:
            content = self.store.get(attachment.storage_key)
        except storage.StoredFileMissing:
            raise AttachmentDamaged(f"The file of attachment {attachment.id} is missing from the store.")
        if hashlib.sha256(content).hexdigest() != attachment.checksum:
            # Better no file than a wrong one: a damaged contract scan must not pass as the original.
            raise AttachmentDamaged(f"The file of attachment {attachment.id} does not match its checksum.")
        return {**attachment_out.dump(attachment), "content": base64.b64encode(content).decode("ascii")}

    def delete_attachment(self, contract_id, attachment_id):
        """Remove a file: only while the contract is a draft (what was approved and signed stays)."""
        self.require_writer()
        contract = self.find(contract_id)
        attachment = self._find_attachment(contract, attachment_id)
        if contract.status != "draft":
            raise illegal(contract, "changed")
        self.session.delete(attachment)
        self.session.flush()
        storage.delete_after_commit(self.session, self.store, attachment.storage_key)

    def _find_attachment(self, contract, attachment_id):
        attachment = self.session.execute(select(ContractAttachment).where(
            ContractAttachment.id == str(attachment_id),
            ContractAttachment.contract_id == contract.id)).scalar_one_or_none()
        if attachment is None:
            raise NotFound(f"Attachment {attachment_id} was not found on contract {contract.id}.")
        return attachment


class AttachmentDamaged(Exception):
    """The store lost or changed a file: an operator's problem (500, logged), not the caller's."""


def decode_content(content_base64):
    try:
        return base64.b64decode(content_base64 or "", validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise ValidationFailed("The file is not valid base64.", {"file": ["Not valid base64."]})


def clean_file_name(file_name):
    """The name to show and to offer on download: no folders, no control characters."""
    name = os.path.basename(str(file_name or "").replace("\\", "/"))
    name = "".join(char for char in name if char.isprintable()).strip()
    return name[-255:] if len(name) > 255 else name


# --- the daily check -------------------------------------------------------------

class ContractExpiry:
    """Activates signed contracts on their start date, expires ended ones and
    announces the ones about to end (30, 7 and 1 days before, each once).

    Several sales instances may run it at once. Each row is claimed with a
    conditional UPDATE and acted on only where that UPDATE changed it
    (rowcount 1): on PostgreSQL the second instance's UPDATE waits for the
    first one's transaction and then no longer matches, so every event goes
    out once.
    """

    def __init__(self, session, context):
        self.session = session
        self.context = context

    def run(self, today):
        if not self.context.is_admin:
            raise Forbidden("Only admins run the contract expiry check.")
        activated = [contract.id for contract in self._claim_all(
            "activate", Contract.status == "signed", Contract.start_date <= today)]
        expired = [contract.id for contract in self._claim_all(
            "expire", Contract.status.in_(LIVE_STATUSES), Contract.end_date < today)]
        expiring = self._announce(today)
        return ExpiryCheckOut().dump({"today": today, "activated": activated, "expired": expired,
                                      "expiring": expiring})

    def _candidates(self, *conditions):
        return self.session.execute(select(Contract.id).where(*conditions).order_by(Contract.end_date, Contract.id)
                                    ).scalars().all()

    def _claim(self, contract_id, conditions, values):
        """Change one row if it still matches ``conditions``; True when this caller did."""
        result = self.session.execute(
            update(Contract).where(Contract.id == contract_id, *conditions)
            .values(**values, updated_at=utcnow(), version=Contract.version + 1)
            .execution_options(synchronize_session=False))
        return result.rowcount == 1

    def _claim_all(self, action, *conditions):
        transition = TRANSITIONS[action]
        moved = []
        for contract_id in self._candidates(*conditions):
            now = utcnow()
            previous = self.session.execute(select(Contract.status).where(Contract.id == contract_id)).scalar_one()
            values = {"status": transition.to_status, **({"expired_at": now} if action == "expire" else {})}
            if not self._claim(contract_id, (*conditions, Contract.status == previous), values):
                continue  # another instance got there first
            contract = self._reload(contract_id)
            self.session.add(ContractStatusChange(contract_id=contract_id, from_status=previous,
                                                  to_status=transition.to_status, changed_by=None, changed_at=now,
                                                  note="daily check"))
            record_event(self.session, PRODUCER, transition.event, event_data(contract), self.context)
            moved.append(contract)
        self.session.flush()
        return moved

    def _announce(self, today):
        announced = []
        horizon = today + timedelta(days=max(EXPIRY_NOTICE_DAYS))
        for contract_id in self._candidates(Contract.status.in_(LIVE_STATUSES), Contract.end_date >= today,
                                            Contract.end_date <= horizon):
            end_date = self.session.execute(select(Contract.end_date).where(Contract.id == contract_id)).scalar_one()
            days_to_end = (end_date - today).days
            # The nearest threshold reached; ones passed while nobody checked are skipped,
            # so a contract found 5 days before its end gets the 7-day notice only.
            notice = min(days for days in EXPIRY_NOTICE_DAYS if days >= days_to_end)
            claimed = self._claim(contract_id, (
                Contract.status.in_(LIVE_STATUSES),
                Contract.last_expiry_notice_days.is_(None) | (Contract.last_expiry_notice_days > notice),
            ), {"last_expiry_notice_days": notice})
            if not claimed:
                continue
            contract = self._reload(contract_id)
            record_event(self.session, PRODUCER, "contract.expiring",
                         event_data(contract, days_left=notice, days_to_end=days_to_end), self.context)
            announced.append({"id": contract_id, "days_left": notice, "end_date": end_date.isoformat()})
        return announced

    def _reload(self, contract_id):
        # The claim changed the row behind the ORM's back: read it as it is now.
        return self.session.execute(select(Contract).where(Contract.id == contract_id)
                                    .execution_options(populate_existing=True)).scalar_one()
