"""Contracts: the lifecycle, who may move it, attachments and the daily expiry check."""
import base64
import hashlib
import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import func, select

from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed, VersionMismatch
from crm_common.outbox import outbox_table
from crm_common.testing_cast import ALICE, BOB, MANAGER

from sales import storage
from sales.contracts import AttachmentDamaged, ContractExpiry, Contracts
from sales.models import Contract, ContractAttachment, CustomerReplica, Order
from sales.service import SalesService

TODAY = date(2026, 11, 29)
CUSTOMER = "11111111-1111-4111-8111-111111111111"
OTHER_CUSTOMER = "22222222-2222-4222-8222-222222222222"
BOBS_CUSTOMER = "44444444-4444-4444-8444-444444444444"


def events(session, event_type):
    payloads = session.execute(select(outbox_table.c.payload).order_by(outbox_table.c.id)).scalars()
    return [e for e in map(json.loads, payloads) if e["type"] == event_type]


@pytest.fixture
def store(tmp_path):
    return storage.LocalDiskStore(tmp_path / "attachments")


@pytest.fixture(autouse=True)
def customers(session):
    for customer_id, deleted in ((CUSTOMER, False), (OTHER_CUSTOMER, False),
                                 ("33333333-3333-4333-8333-333333333333", True)):
        session.add(CustomerReplica(id=customer_id, name="Acme", owner_id=ALICE, owner_team_id="east",
                                    deleted=deleted, version=1))
    session.add(CustomerReplica(id=BOBS_CUSTOMER, name="Bob's", owner_id=BOB, owner_team_id="west", version=1))
    session.flush()


@pytest.fixture
def contracts(session, store):
    return lambda context: Contracts(session, context, store)


def draft(**overrides):
    return {"customer_id": CUSTOMER, "title": "Annual support", "value": "120000.00", "currency": "cny",
            "start_date": (TODAY - timedelta(days=1)).isoformat(),
            "end_date": (TODAY + timedelta(days=364)).isoformat(), "renewal_terms": "Renews yearly", **overrides}


@pytest.fixture
def alices(contracts, as_alice):
    return contracts(as_alice).create(draft())


def approved(contracts, as_alice, as_east_manager, contract_id):
    contracts(as_alice).submit(contract_id)
    return contracts(as_east_manager).approve(contract_id)


# --- drafts ------------------------------------------------------------------

def test_a_new_contract_is_a_draft_of_its_author_with_money_as_a_string(contracts, as_alice, session):
    contract = contracts(as_alice).create(draft())
    assert contract["status"] == "draft"
    assert (contract["owner_id"], contract["owner_team_id"], contract["created_by"]) == (ALICE, "east", ALICE)
    assert contract["value"] == "120000.00" and contract["currency"] == "CNY"
    history = contracts(as_alice).history(contract["id"])["items"]
    assert [(h["from_status"], h["to_status"]) for h in history] == [(None, "draft")]


@pytest.mark.parametrize("changes, field", [
    ({"end_date": (TODAY - timedelta(days=1)).isoformat()}, "end_date"),
    ({"end_date": (TODAY - timedelta(days=5)).isoformat()}, "end_date"),
    ({"customer_id": "33333333-3333-4333-8333-333333333333"}, "customer_id"),
    ({"customer_id": "44444444-4444-4444-8444-444444444444"}, "customer_id"),
    ({"value": "-1"}, "value"),
    ({"value": 12.345}, "value"),
    ({"title": ""}, "title"),
    ({"order_id": "55555555-5555-4555-8555-555555555555"}, "order_id"),
    ({"owner_id": "00000000-0000-4000-8000-00000000000b"}, "owner_id"),
])
def test_bad_drafts_are_refused_naming_the_field_and_nothing_is_written(contracts, as_alice, session,
                                                                        changes, field):
    with pytest.raises(ValidationFailed) as refused:
        contracts(as_alice).create(draft(**changes))
    assert field in refused.value.errors
    assert session.execute(select(func.count()).select_from(Contract)).scalar_one() == 0


def test_a_contract_may_name_an_order_of_its_own_customer_only(contracts, as_admin, session):
    session.add(Order(id="66666666-6666-4666-8666-666666666666", customer_id=OTHER_CUSTOMER, currency="CNY",
                      status="confirmed", subtotal=Decimal("1.00"), discount_total=Decimal("0"),
                      tax_total=Decimal("0"), total=Decimal("1.00")))
    session.flush()
    with pytest.raises(ValidationFailed) as refused:
        contracts(as_admin).create(draft(order_id="66666666-6666-4666-8666-666666666666"))
    assert refused.value.errors == {"order_id": ["The order belongs to another customer."]}
    contract = contracts(as_admin).create(draft(customer_id=OTHER_CUSTOMER,
                                                order_id="66666666-6666-4666-8666-666666666666"))
    assert contract["order_id"] == "66666666-6666-4666-8666-666666666666"


def test_a_draft_is_edited_with_if_match_and_only_while_a_draft(contracts, as_alice, as_east_manager, alices):
    changed = contracts(as_alice).update(alices["id"], {"value": "99000.50"}, expected_version=1)
    assert changed["value"] == "99000.50" and changed["version"] == 2
    with pytest.raises(VersionMismatch):
        contracts(as_alice).update(alices["id"], {"title": "Stale"}, expected_version=1)
    with pytest.raises(ValidationFailed) as refused:
        contracts(as_alice).update(alices["id"], {"end_date": "2020-01-01"})
    assert "end_date" in refused.value.errors
    contracts(as_alice).submit(alices["id"])
    with pytest.raises(Conflict) as conflict:
        contracts(as_alice).update(alices["id"], {"title": "Too late"})
    assert "pending_approval" in conflict.value.detail
    assert conflict.value.extra["allowed_actions"] == ["approve", "reject"]


def test_each_role_sees_its_own_the_team_or_all_contracts(contracts, as_alice, as_bob, as_east_manager,
                                                         as_viewer, alices):
    bobs = contracts(as_bob).create(draft(title="Bob's", customer_id=BOBS_CUSTOMER))
    assert [c["id"] for c in contracts(as_alice).list()["items"]] == [alices["id"]]
    assert [c["id"] for c in contracts(as_east_manager).list()["items"]] == [alices["id"]]
    assert {c["id"] for c in contracts(as_viewer).list()["items"]} == {alices["id"], bobs["id"]}
    with pytest.raises(NotFound):
        contracts(as_bob).get(alices["id"])
    with pytest.raises(Forbidden):
        contracts(as_viewer).create(draft())


def test_lists_filter_by_status_customer_owner_and_end_date_a_page_at_a_time(contracts, as_admin, as_alice):
    ids = [contracts(as_alice).create(draft(end_date=(TODAY + timedelta(days=days)).isoformat()))["id"]
           for days in (10, 40, 400)]
    listing = contracts(as_admin)
    soon = listing.list({"ending_before": (TODAY + timedelta(days=60)).isoformat()})["items"]
    assert {c["id"] for c in soon} == set(ids[:2])
    later = listing.list({"ending_after": (TODAY + timedelta(days=30)).isoformat(), "owner_id": ALICE})["items"]
    assert {c["id"] for c in later} == set(ids[1:])
    assert listing.list({"status": "active"})["items"] == []
    assert len(listing.list({"customer_id": CUSTOMER})["items"]) == 3
    first = listing.list(limit=2)
    second = listing.list(limit=2, cursor=first["next_cursor"])
    assert {c["id"] for c in first["items"] + second["items"]} == set(ids) and second["next_cursor"] is None
    with pytest.raises(ValidationFailed) as refused:
        listing.list({"status": "lost"})
    assert "status" in refused.value.errors


# --- the lifecycle -------------------------------------------------------------

def test_the_lifecycle_from_draft_to_active_is_kept_in_the_history_and_published(
        contracts, as_alice, as_east_manager, alices, session):
    contracts(as_alice).submit(alices["id"])
    approval = contracts(as_east_manager).approve(alices["id"])
    assert approval["status"] == "approved" and approval["approved_by"] == MANAGER
    signed = contracts(as_alice).sign(alices["id"], {"signed_at": "2026-11-28T10:00:00+08:00"}, today=TODAY)
    # Its term began yesterday: in force from the signature.
    assert signed["status"] == "active" and signed["signed_at"].startswith("2026-11-28T02:00:00")
    history = contracts(as_alice).history(alices["id"])["items"]
    assert [h["to_status"] for h in history] == ["active", "signed", "approved", "pending_approval", "draft"]
    for event_type in ("contract.submitted", "contract.approved", "contract.signed", "contract.activated"):
        [published] = events(session, event_type)
        data = published["data"]
        assert (data["id"], data["customer_id"], data["owner_id"], data["owner_team_id"]) == \
            (alices["id"], CUSTOMER, ALICE, "east")
        assert (data["value"], data["currency"], data["end_date"]) == ("120000.00", "CNY", alices["end_date"])


def test_a_contract_starting_later_waits_signed_until_its_start_date(contracts, as_alice, as_east_manager,
                                                                    session):
    later = contracts(as_alice).create(draft(start_date=(TODAY + timedelta(days=3)).isoformat()))
    approved(contracts, as_alice, as_east_manager, later["id"])
    assert contracts(as_alice).sign(later["id"], today=TODAY)["status"] == "signed"
    system = ContractExpiry(session, _system())
    assert system.run(TODAY + timedelta(days=2))["activated"] == []
    assert system.run(TODAY + timedelta(days=3))["activated"] == [later["id"]]
    assert contracts(as_alice).get(later["id"])["status"] == "active"
    assert len(events(session, "contract.activated")) == 1


def test_only_a_manager_of_the_owners_team_or_an_admin_approves_and_never_the_author(
        contracts, as_alice, as_east_manager, as_admin, session):
    from crm_common.context import RequestContext
    west_manager = RequestContext(user_id="00000000-0000-4000-8000-0000000000e2", role="manager", team_id="west")
    contract = contracts(as_alice).create(draft())
    contracts(as_alice).submit(contract["id"])
    with pytest.raises(Forbidden):
        contracts(as_alice).approve(contract["id"])
    with pytest.raises(NotFound):
        contracts(west_manager).approve(contract["id"])  # not theirs to see
    own = contracts(as_east_manager).create(draft(title="The manager's own"))
    contracts(as_east_manager).submit(own["id"])
    with pytest.raises(Forbidden) as refused:
        contracts(as_east_manager).approve(own["id"])
    assert "wrote" in refused.value.detail
    assert contracts(as_admin).approve(own["id"])["status"] == "approved"
    assert contracts(as_east_manager).get(contract["id"])["status"] == "pending_approval"


def test_a_rejected_contract_goes_back_to_draft_with_the_reason(contracts, as_alice, as_east_manager, alices,
                                                               session):
    contracts(as_alice).submit(alices["id"])
    with pytest.raises(ValidationFailed) as refused:
        contracts(as_east_manager).reject(alices["id"], {})
    assert "reason" in refused.value.errors
    rejected = contracts(as_east_manager).reject(alices["id"], {"reason": "Price too low"})
    assert (rejected["status"], rejected["rejected_reason"]) == ("draft", "Price too low")
    assert contracts(as_alice).update(alices["id"], {"value": "150000"})["value"] == "150000.00"
    assert events(session, "contract.rejected")[0]["data"]["reason"] == "Price too low"
    assert contracts(as_alice).history(alices["id"])["items"][0]["note"] == "Price too low"


@pytest.mark.parametrize("action", ["approve", "sign", "terminate", "submit"])
def test_illegal_transitions_answer_409_naming_the_status_and_change_nothing(
        contracts, as_alice, as_admin, alices, session, action):
    if action == "submit":
        contracts(as_alice).submit(alices["id"])
    args = {"approve": (), "sign": ({},), "terminate": ({"reason": "x"},), "submit": ()}[action]
    before = contracts(as_admin).get(alices["id"])
    with pytest.raises(Conflict) as conflict:
        getattr(contracts(as_admin), action)(alices["id"], *args)
    assert before["status"] in conflict.value.detail
    assert conflict.value.extra["current_status"] == before["status"]
    assert contracts(as_admin).get(alices["id"]) == before


def test_a_live_contract_can_be_terminated_once_with_a_reason(contracts, as_alice, as_east_manager, alices,
                                                             session):
    approved(contracts, as_alice, as_east_manager, alices["id"])
    contracts(as_alice).sign(alices["id"], today=TODAY)
    ended = contracts(as_alice).terminate(alices["id"], {"reason": "Customer went bankrupt"})
    assert (ended["status"], ended["termination_reason"]) == ("terminated", "Customer went bankrupt")
    with pytest.raises(Conflict) as conflict:
        contracts(as_alice).terminate(alices["id"], {"reason": "again"})
    assert conflict.value.extra == {"current_status": "terminated", "allowed_actions": []}
    assert len(events(session, "contract.terminated")) == 1


# --- the daily check -----------------------------------------------------------

def _system():
    from crm_common.context import RequestContext
    return RequestContext.system()


def live_contract(contracts, as_alice, as_east_manager, ends_in_days):
    contract = contracts(as_alice).create(draft(end_date=(TODAY + timedelta(days=ends_in_days)).isoformat()))
    approved(contracts, as_alice, as_east_manager, contract["id"])
    return contracts(as_alice).sign(contract["id"], today=TODAY)


def test_expiring_notices_go_out_once_per_threshold_and_ended_contracts_expire(
        contracts, as_alice, as_east_manager, session):
    contract = live_contract(contracts, as_alice, as_east_manager, ends_in_days=31)
    check = ContractExpiry(session, _system())
    assert check.run(TODAY)["expiring"] == []
    assert check.run(TODAY + timedelta(days=1))["expiring"] == [
        {"id": contract["id"], "days_left": 30, "end_date": contract["end_date"]}]
    assert check.run(TODAY + timedelta(days=2))["expiring"] == []  # 29 days left: 30 was announced
    assert [n["days_left"] for n in check.run(TODAY + timedelta(days=26))["expiring"]] == [7]  # 5 left
    assert check.run(TODAY + timedelta(days=27))["expiring"] == []
    assert [n["days_left"] for n in check.run(TODAY + timedelta(days=30))["expiring"]] == [1]
    assert check.run(TODAY + timedelta(days=31))["expired"] == []  # its last day
    assert check.run(TODAY + timedelta(days=32))["expired"] == [contract["id"]]
    assert check.run(TODAY + timedelta(days=33))["expired"] == []
    notices = events(session, "contract.expiring")
    assert [(e["data"]["days_left"], e["data"]["id"]) for e in notices] == [(30, contract["id"]), (7, contract["id"]),
                                                                           (1, contract["id"])]
    [expired] = events(session, "contract.expired")
    assert expired["data"]["status"] == "expired" and expired["actor"]["role"] == "system"
    assert contracts(as_alice).history(contract["id"])["items"][0]["from_status"] == "active"


def test_a_second_check_racing_the_first_claims_nothing(contracts, as_alice, as_east_manager, session):
    """Two instances: both listed the row before either changed it; the claim lets one act."""
    contract = live_contract(contracts, as_alice, as_east_manager, ends_in_days=7)
    first = ContractExpiry(session, _system())
    second = ContractExpiry(session, _system())
    original = second._candidates
    second._candidates = lambda *conditions: [contract["id"]]
    assert [n["days_left"] for n in first.run(TODAY)["expiring"]] == [7]
    assert second._announce(TODAY) == []
    second._candidates = original
    assert len(events(session, "contract.expiring")) == 1


def test_only_admins_run_the_check_on_demand(session, as_alice):
    with pytest.raises(Forbidden):
        ContractExpiry(session, as_alice).run(TODAY)


# --- attachments ---------------------------------------------------------------

def test_an_attachment_is_stored_listed_and_downloaded_byte_for_byte(contracts, as_alice, alices, store):
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 10
    added = contracts(as_alice).add_attachment(alices["id"], base64.b64encode(pdf).decode(),
                                               "C:\\scans\\合同 2026.pdf", "application/pdf")
    assert (added["file_name"], added["size"], added["checksum"]) == \
        ("合同 2026.pdf", len(pdf), hashlib.sha256(pdf).hexdigest())
    assert contracts(as_alice).list_attachments(alices["id"])["items"] == [added]
    download = contracts(as_alice).attachment_content(alices["id"], added["id"])
    assert base64.b64decode(download["content"]) == pdf and download["content_type"] == "application/pdf"


def test_a_damaged_file_is_never_served(contracts, as_alice, alices, store, session):
    added = contracts(as_alice).add_attachment(alices["id"], base64.b64encode(b"original").decode(), "a.txt")
    key = session.execute(select(ContractAttachment.storage_key)).scalar_one()
    store.put(key, b"tampered")
    with pytest.raises(AttachmentDamaged):
        contracts(as_alice).attachment_content(alices["id"], added["id"])


def test_bad_uploads_are_refused_naming_the_field(contracts, as_alice, as_bob, alices):
    with pytest.raises(ValidationFailed) as empty:
        contracts(as_alice).add_attachment(alices["id"], "", "empty.pdf")
    assert "file" in empty.value.errors
    with pytest.raises(ValidationFailed) as garbage:
        contracts(as_alice).add_attachment(alices["id"], "not base64!", "x.pdf")
    assert "file" in garbage.value.errors
    with pytest.raises(ValidationFailed) as kind:
        contracts(as_alice).add_attachment(alices["id"], "eA==", "x.pdf", "not a type")
    assert "content_type" in kind.value.errors
    with pytest.raises(NotFound):
        contracts(as_bob).add_attachment(alices["id"], "eA==", "x.pdf")


def test_attachments_are_deleted_only_from_drafts_and_the_file_goes_after_commit(
        contracts, as_alice, as_east_manager, alices, store, session):
    first = contracts(as_alice).add_attachment(alices["id"], base64.b64encode(b"draft 1").decode(), "d1.txt")
    key = session.execute(select(ContractAttachment.storage_key)).scalar_one()
    contracts(as_alice).delete_attachment(alices["id"], first["id"])
    assert store.get(key) == b"draft 1"  # not yet committed
    session.commit()
    with pytest.raises(storage.StoredFileMissing):
        store.get(key)
    signed_scan = contracts(as_alice).add_attachment(alices["id"], base64.b64encode(b"v2").decode(), "v2.txt")
    contracts(as_alice).submit(alices["id"])
    with pytest.raises(Conflict) as conflict:
        contracts(as_alice).delete_attachment(alices["id"], signed_scan["id"])
    assert "pending_approval" in conflict.value.detail


# --- the entrypoints -----------------------------------------------------------

def test_the_service_runs_the_flow_and_the_timer_as_the_system(session, as_alice, tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_ATTACHMENTS_DIR", str(tmp_path / "files"))
    service = worker_factory(SalesService, db=session, context=as_alice)
    created = service.create_contract(draft(), "east")
    service.submit_contract(created["id"])
    added = service.add_contract_attachment(created["id"], base64.b64encode(b"scan").decode(), "scan.pdf",
                                            "application/pdf")
    assert service.contract_attachment_content(created["id"], added["id"])["content"] == \
        base64.b64encode(b"scan").decode()
    assert service.list_contract_attachments(created["id"])["items"][0]["file_name"] == "scan.pdf"
    assert service.get_contract(created["id"])["status"] == "pending_approval"
    with pytest.raises(Forbidden):
        service.check_contract_expiry()
    service.check_contracts_daily()  # runs as the system, not as the worker's caller
