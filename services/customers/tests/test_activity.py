"""Contacts, follow-ups and saved views: the rules as a user meets them."""
import json
from datetime import timedelta

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import func, select

from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed, VersionMismatch
from crm_common.outbox import outbox_table
from crm_common.types import utcnow

from customers.activity import Contacts, Followups, SavedViews
from customers.domain import CustomerBook
from customers.models import Contact, Customer, CustomerHistory, Followup, SavedView
from customers.service import CustomersService
from conftest import ALICE, BOB


def events(session, event_type=None):
    rows = session.execute(select(outbox_table.c.payload).order_by(outbox_table.c.id)).scalars()
    found = [json.loads(row) for row in rows]
    return [e for e in found if event_type is None or e["type"] == event_type]


def history(session, customer_id):
    return session.execute(select(CustomerHistory).where(CustomerHistory.customer_id == customer_id)
                           .order_by(CustomerHistory.id)).scalars().all()


def count(session, model):
    return session.execute(select(func.count()).select_from(model)).scalar_one()


def iso(moment):
    return moment.isoformat()


@pytest.fixture
def company(session, as_alice):
    return CustomerBook(session, as_alice).create({"kind": "company", "name": "Acme Trading"})


@pytest.fixture
def person(session, as_alice):
    return CustomerBook(session, as_alice).create(
        {"kind": "person", "name": "Pat Person", "contact": {"emails": ["pat@example.com"]}})


# --- contacts ----------------------------------------------------------------

def test_adding_a_contact_normalises_it_and_makes_the_first_one_primary(session, as_alice, company):
    contact = Contacts(session, as_alice).create(company["id"], {
        "name": "  Li Wei ", "title": "Buyer", "phones": ["138 0013 8000", "+86 138-0013-8000"],
        "emails": ["Li.Wei@ACME.example", "li.wei@acme.example"], "notes": "prefers mornings"})
    assert contact["name"] == "Li Wei"
    assert contact["phones"] == ["+8613800138000"]
    assert contact["emails"] == ["li.wei@acme.example"]
    assert contact["is_primary"] is True
    assert contact["version"] == 1
    assert contact["customer_id"] == company["id"]
    assert contact["created_by"] == ALICE


def test_making_a_contact_primary_takes_the_flag_from_the_others(session, as_alice, company):
    contacts = Contacts(session, as_alice)
    first = contacts.create(company["id"], {"name": "Zhang First"})
    second = contacts.create(company["id"], {"name": "Bai Second"})
    assert second["is_primary"] is False
    third = contacts.create(company["id"], {"name": "Chen Third", "is_primary": True})
    listed = contacts.list(company["id"])["items"]
    # Primary first, then by name.
    assert [c["id"] for c in listed] == [third["id"], second["id"], first["id"]]
    assert [c["is_primary"] for c in listed] == [True, False, False]
    # The contact that lost the flag has a new version: its ETag changed.
    assert contacts.get(company["id"], first["id"])["version"] == 2

    contacts.update(company["id"], second["id"], {"is_primary": True})
    primaries = [c["id"] for c in contacts.list(company["id"])["items"] if c["is_primary"]]
    assert primaries == [second["id"]]


def test_contact_changes_are_in_the_customer_history_and_its_keyword_search(session, as_alice, company):
    contacts = Contacts(session, as_alice)
    contact = contacts.create(company["id"], {"name": "Müller Hans"})
    customer = session.get(Customer, company["id"])
    assert "muller hans" in customer.search_text
    assert customer.version > company["version"]

    contacts.update(company["id"], contact["id"], {"name": "Hans Schmidt", "title": "CEO"})
    assert "hans schmidt" in customer.search_text and "muller" not in customer.search_text
    contacts.delete(company["id"], contact["id"])
    assert "hans" not in customer.search_text

    entries = [e for e in history(session, company["id"]) if e.action.startswith("contact_")]
    assert [e.action for e in entries] == ["contact_added", "contact_updated", "contact_removed"]
    assert entries[0].changes["name"] == {"old": None, "new": "Müller Hans"}
    assert entries[1].changes["name"] == {"old": "Müller Hans", "new": "Hans Schmidt"}
    assert entries[1].changes["title"] == {"old": None, "new": "CEO"}
    assert "version" not in entries[1].changes
    assert entries[2].changes["name"] == {"old": "Hans Schmidt", "new": None}
    assert all(e.changes["id"]["old"] in (None, contact["id"]) for e in entries)
    assert all(e.actor_id == ALICE for e in entries)


def test_update_honours_the_expected_version(session, as_alice, company):
    contacts = Contacts(session, as_alice)
    contact = contacts.create(company["id"], {"name": "Li Wei"})
    with pytest.raises(VersionMismatch):
        contacts.update(company["id"], contact["id"], {"title": "Boss"}, expected_version=7)
    assert contacts.get(company["id"], contact["id"])["title"] is None
    updated = contacts.update(company["id"], contact["id"], {"title": "Boss"}, expected_version=1)
    assert updated["title"] == "Boss" and updated["version"] == 2


def test_saving_the_same_values_makes_no_new_version(session, as_alice, company):
    contacts = Contacts(session, as_alice)
    contact = contacts.create(company["id"], {"name": "Li Wei", "title": "Buyer"})
    entries_before = len(history(session, company["id"]))
    assert contacts.update(company["id"], contact["id"], {"title": "Buyer"})["version"] == 1
    assert len(history(session, company["id"])) == entries_before


def test_delete_removes_the_contact(session, as_alice, company):
    contacts = Contacts(session, as_alice)
    contact = contacts.create(company["id"], {"name": "Li Wei"})
    contacts.delete(company["id"], contact["id"])
    with pytest.raises(NotFound):
        contacts.get(company["id"], contact["id"])
    assert count(session, Contact) == 0


def test_a_person_has_no_contacts(session, as_alice, person):
    with pytest.raises(Conflict) as caught:
        Contacts(session, as_alice).create(person["id"], {"name": "Someone"})
    assert "person" in caught.value.detail
    assert count(session, Contact) == 0


@pytest.mark.parametrize("body, field", [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": "X", "phones": ["call me"]}, "phones"),
    ({"name": "X", "phones": "+8613800138000"}, "phones"),
    ({"name": "X", "emails": ["not-an-email"]}, "emails"),
    ({"name": "X", "is_primary": "maybe"}, "is_primary"),
    ({"name": "X", "title": "t" * 101}, "title"),
    ({"name": "X", "version": 3}, "version"),
    ({"name": "X", "customer_id": "elsewhere"}, "customer_id"),
])
def test_invalid_contact_names_the_field_and_writes_nothing(session, as_alice, company, body, field):
    entries_before = len(history(session, company["id"]))
    with pytest.raises(ValidationFailed) as caught:
        Contacts(session, as_alice).create(company["id"], body)
    assert field in caught.value.errors
    assert count(session, Contact) == 0
    assert len(history(session, company["id"])) == entries_before


@pytest.mark.parametrize("changes, field", [
    ({}, "_schema"),
    ({"name": ""}, "name"),
    ({"emails": ["nope"]}, "emails"),
    ({"id": "other"}, "id"),
])
def test_invalid_contact_change_names_the_field_and_changes_nothing(session, as_alice, company, changes, field):
    contacts = Contacts(session, as_alice)
    contact = contacts.create(company["id"], {"name": "Li Wei"})
    with pytest.raises(ValidationFailed) as caught:
        contacts.update(company["id"], contact["id"], changes)
    assert field in caught.value.errors
    assert contacts.get(company["id"], contact["id"]) == contact


def test_contacts_follow_the_visibility_of_their_customer(session, as_alice, as_bob, as_east_manager, company):
    contact = Contacts(session, as_alice).create(company["id"], {"name": "Li Wei"})
    bob = Contacts(session, as_bob)
    with pytest.raises(NotFound):
        bob.list(company["id"])
    with pytest.raises(NotFound):
        bob.get(company["id"], contact["id"])
    with pytest.raises(NotFound):
        bob.create(company["id"], {"name": "Sneaky"})
    with pytest.raises(NotFound):
        bob.update(company["id"], contact["id"], {"name": "Hijack"})
    with pytest.raises(NotFound):
        bob.delete(company["id"], contact["id"])
    assert [c["name"] for c in Contacts(session, as_east_manager).list(company["id"])["items"]] == ["Li Wei"]


def test_a_contact_is_found_only_at_its_own_customer(session, as_alice, company):
    other = CustomerBook(session, as_alice).create({"kind": "company", "name": "Other Works"})
    contact = Contacts(session, as_alice).create(company["id"], {"name": "Li Wei"})
    with pytest.raises(NotFound):
        Contacts(session, as_alice).get(other["id"], contact["id"])


def test_viewers_read_contacts_but_cannot_change_them(session, as_alice, as_viewer, company):
    contact = Contacts(session, as_alice).create(company["id"], {"name": "Li Wei"})
    viewer = Contacts(session, as_viewer)
    assert viewer.list(company["id"])["items"][0]["id"] == contact["id"]
    with pytest.raises(Forbidden):
        viewer.create(company["id"], {"name": "No"})
    with pytest.raises(Forbidden):
        viewer.update(company["id"], contact["id"], {"name": "No"})
    with pytest.raises(Forbidden):
        viewer.delete(company["id"], contact["id"])
    assert [c["name"] for c in viewer.list(company["id"])["items"]] == ["Li Wei"]


# --- follow-ups --------------------------------------------------------------

def test_logging_a_follow_up_plans_the_next_step_and_publishes_it(session, as_alice, company):
    occurred = utcnow() - timedelta(hours=1)
    next_at = utcnow() + timedelta(days=2)
    logged = Followups(session, as_alice).log(company["id"], {
        "type": "call", "occurred_at": iso(occurred), "summary": " Talked prices ", "outcome": "interested",
        "next_followup_at": iso(next_at)})
    assert logged["summary"] == "Talked prices"
    assert logged["owner_id"] == ALICE and logged["closed_at"] is None
    customer = session.get(Customer, company["id"])
    assert customer.next_followup_at == next_at

    [event] = events(session, "followup.logged")
    assert event["data"] == {
        "id": logged["id"], "customer_id": company["id"], "customer_name": "Acme Trading",
        "owner_id": ALICE, "owner_team_id": "east", "type": "call", "occurred_at": iso(occurred),
        "summary": "Talked prices", "outcome": "interested", "next_followup_at": iso(next_at),
        "closed_followup_ids": [], "logged_by": ALICE}
    [entry] = [e for e in history(session, company["id"]) if e.action == "followup_logged"]
    assert entry.changes["next_followup_at"] == {"old": None, "new": iso(next_at)}
    assert entry.changes["followup_id"]["new"] == logged["id"]


def test_a_new_follow_up_closes_the_earlier_open_ones(session, as_alice, company):
    followups = Followups(session, as_alice)
    first = followups.log(company["id"], {"type": "call", "summary": "first",
                                          "next_followup_at": iso(utcnow() + timedelta(days=1))})
    second = followups.log(company["id"], {"type": "visit", "summary": "second"})
    closed = followups.get(first["id"])
    assert closed["closed_at"] is not None and closed["closed_by_followup_id"] == second["id"]
    assert session.get(Customer, company["id"]).next_followup_at is None
    assert events(session, "followup.logged")[-1]["data"]["closed_followup_ids"] == [first["id"]]
    assert followups.get(second["id"])["closed_at"] is None


def test_the_history_of_follow_ups_is_newest_first_in_pages(session, as_alice, company):
    followups = Followups(session, as_alice)
    now = utcnow()
    logged = [followups.log(company["id"], {"type": "note", "summary": f"note {days}",
                                            "occurred_at": iso(now - timedelta(days=days))})
              for days in (5, 1, 3, 2, 4)]
    page = followups.list(company["id"], limit=2)
    seen = [item["summary"] for item in page["items"]]
    while page["next_cursor"]:
        page = followups.list(company["id"], limit=2, cursor=page["next_cursor"])
        seen += [item["summary"] for item in page["items"]]
    assert seen == ["note 1", "note 2", "note 3", "note 4", "note 5"]
    assert len(logged) == 5


@pytest.mark.parametrize("body, field", [
    ({"summary": "no type"}, "type"),
    ({"type": "fax", "summary": "x"}, "type"),
    ({"type": "call"}, "summary"),
    ({"type": "call", "summary": ""}, "summary"),
    ({"type": "call", "summary": "x" * 5001}, "summary"),
    ({"type": "call", "summary": "x", "occurred_at": "yesterday"}, "occurred_at"),
    ({"type": "call", "summary": "x", "occurred_at": "2999-01-01T00:00:00Z"}, "occurred_at"),
    ({"type": "call", "summary": "x", "occurred_at": "2026-01-02T10:00:00Z",
      "next_followup_at": "2026-01-02T09:00:00Z"}, "next_followup_at"),
    ({"type": "call", "summary": "x", "next_followup_at": "soon"}, "next_followup_at"),
    ({"type": "call", "summary": "x", "closed_at": "2026-01-02T09:00:00Z"}, "closed_at"),
])
def test_invalid_follow_up_names_the_field_and_writes_nothing(session, as_alice, company, body, field):
    with pytest.raises(ValidationFailed) as caught:
        Followups(session, as_alice).log(company["id"], body)
    assert field in caught.value.errors
    assert count(session, Followup) == 0
    assert events(session, "followup.logged") == []
    assert session.get(Customer, company["id"]).next_followup_at is None


def test_a_follow_up_just_ahead_of_our_clock_is_accepted(session, as_alice, company):
    logged = Followups(session, as_alice).log(company["id"], {
        "type": "call", "summary": "x", "occurred_at": iso(utcnow() + timedelta(minutes=2))})
    assert logged["id"]


def test_follow_ups_follow_the_visibility_of_their_customer(session, as_alice, as_bob, as_viewer, company):
    logged = Followups(session, as_alice).log(company["id"], {"type": "call", "summary": "x"})
    bob = Followups(session, as_bob)
    with pytest.raises(NotFound):
        bob.get(logged["id"])
    with pytest.raises(NotFound):
        bob.list(company["id"])
    with pytest.raises(NotFound):
        bob.log(company["id"], {"type": "call", "summary": "sneaky"})
    with pytest.raises(NotFound):
        Followups(session, as_alice).get("00000000-0000-4000-8000-000000000000")
    viewer = Followups(session, as_viewer)
    assert viewer.get(logged["id"])["id"] == logged["id"]
    with pytest.raises(Forbidden):
        viewer.log(company["id"], {"type": "call", "summary": "no"})
    assert count(session, Followup) == 1


# --- the day plan --------------------------------------------------------------

def plan(session, context, **kwargs):
    return [item["customer_name"] for item in Followups(session, context).due(**kwargs)["items"]]


def log_with_next(session, context, customer_id, next_at, summary="x"):
    # A next step already due was planned at a contact before it.
    occurred = min(utcnow(), next_at) - timedelta(days=1)
    return Followups(session, context).log(customer_id, {
        "type": "call", "summary": summary, "occurred_at": iso(occurred), "next_followup_at": iso(next_at)})


def test_the_day_plan_lists_open_due_follow_ups_soonest_first(session, as_alice):
    book = CustomerBook(session, as_alice)
    now = utcnow()
    later = book.create({"kind": "company", "name": "Later Ltd"})
    sooner = book.create({"kind": "company", "name": "Sooner Ltd"})
    future = book.create({"kind": "company", "name": "Next Month Ltd"})
    log_with_next(session, as_alice, later["id"], now - timedelta(minutes=10))
    log_with_next(session, as_alice, sooner["id"], now - timedelta(hours=3))
    log_with_next(session, as_alice, future["id"], now + timedelta(days=30))
    assert plan(session, as_alice) == ["Sooner Ltd", "Later Ltd"]
    assert plan(session, as_alice, due_before=iso(now + timedelta(days=31))) == [
        "Sooner Ltd", "Later Ltd", "Next Month Ltd"]

    # Logging the next contact with Sooner takes it off the plan.
    Followups(session, as_alice).log(sooner["id"], {"type": "visit", "summary": "done"})
    assert plan(session, as_alice) == ["Later Ltd"]


def test_the_day_plan_pages_with_a_cursor(session, as_alice):
    book = CustomerBook(session, as_alice)
    now = utcnow()
    for hours in range(5):
        customer = book.create({"kind": "company", "name": f"Due {hours}"})
        log_with_next(session, as_alice, customer["id"], now - timedelta(hours=5 - hours))
    page = Followups(session, as_alice).due(limit=2)
    names = [item["customer_name"] for item in page["items"]]
    while page["next_cursor"]:
        page = Followups(session, as_alice).due(limit=2, cursor=page["next_cursor"])
        names += [item["customer_name"] for item in page["items"]]
    assert names == [f"Due {hours}" for hours in range(5)]


def test_the_day_plan_is_the_current_owners_and_skips_deleted_customers(session, as_alice, as_admin):
    book = CustomerBook(session, as_alice)
    kept = book.create({"kind": "company", "name": "Kept Ltd"})
    gone = book.create({"kind": "company", "name": "Gone Ltd"})
    handed_over = book.create({"kind": "company", "name": "Handed Over Ltd"})
    for customer in (kept, gone, handed_over):
        log_with_next(session, as_alice, customer["id"], utcnow() - timedelta(hours=1))
    book.delete(gone["id"])
    # The owner changes behind the follow-up's back: the customer's owner now decides.
    session.get(Customer, handed_over["id"]).owner_id = BOB
    session.flush()
    assert plan(session, as_alice) == ["Kept Ltd"]
    assert plan(session, as_admin, owner_id=BOB) == ["Handed Over Ltd"]


def test_the_day_plan_applies_visibility(session, as_alice, as_bob, as_east_manager):
    customer = CustomerBook(session, as_alice).create({"kind": "company", "name": "Alice Co"})
    log_with_next(session, as_alice, customer["id"], utcnow() - timedelta(hours=1))
    assert plan(session, as_bob, owner_id=ALICE) == []
    assert plan(session, as_bob) == []
    assert plan(session, as_east_manager, owner_id=ALICE) == ["Alice Co"]


@pytest.mark.parametrize("kwargs, field", [
    ({"owner_id": "not-a-uuid"}, "owner_id"),
    ({"due_before": "tomorrow"}, "due_before"),
    ({"limit": 0}, "limit"),
    ({"cursor": "garbage!"}, "cursor"),
])
def test_bad_day_plan_queries_name_the_parameter(session, as_alice, kwargs, field):
    with pytest.raises(ValidationFailed) as caught:
        Followups(session, as_alice).due(**kwargs)
    assert field in caught.value.errors


# --- saved views ---------------------------------------------------------------

def test_saved_views_round_trip_and_stay_private(session, as_alice, as_bob):
    views = SavedViews(session, as_alice)
    created = views.create({"name": " My VIPs ", "filters": {"tag": "vip", "tier": "A"}, "sort": "-name"})
    assert created["name"] == "My VIPs"
    assert created["filters"] == {"tag": "vip", "tier": "A"}  # stored as given
    assert created["sort"] == "-name"
    other = views.create({"name": "Another"})
    assert other["filters"] == {} and other["sort"] is None
    assert [v["name"] for v in views.list()["items"]] == ["Another", "My VIPs"]
    assert views.get(created["id"]) == created

    bob = SavedViews(session, as_bob)
    assert bob.list()["items"] == []
    with pytest.raises(NotFound):
        bob.get(created["id"])
    with pytest.raises(NotFound):
        bob.delete(created["id"])
    # Bob may use the same name for his own view.
    assert bob.create({"name": "My VIPs"})["name"] == "My VIPs"

    views.delete(created["id"])
    with pytest.raises(NotFound):
        views.get(created["id"])
    assert [v["name"] for v in views.list()["items"]] == ["Another"]


def test_a_second_view_with_the_same_name_is_a_conflict(session, as_alice):
    views = SavedViews(session, as_alice)
    views.create({"name": "Mine"})
    with pytest.raises(Conflict) as caught:
        views.create({"name": " Mine", "filters": {"tier": "B"}})
    assert "name" in caught.value.errors
    assert count(session, SavedView) == 1


@pytest.mark.parametrize("body, field", [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"name": "v", "filters": {"tier": "Z"}}, "filters.tier"),
    ({"name": "v", "filters": {"colour": "red"}}, "filters.colour"),
    ({"name": "v", "filters": {"owner_id": "nobody"}}, "filters.owner_id"),
    ({"name": "v", "filters": "tier=A"}, "filters"),
    ({"name": "v", "sort": "colour"}, "sort"),
    ({"name": "v", "sort": "--name"}, "sort"),
    ({"name": "v", "user_id": BOB}, "user_id"),
])
def test_invalid_views_name_the_field_and_write_nothing(session, as_alice, body, field):
    with pytest.raises(ValidationFailed) as caught:
        SavedViews(session, as_alice).create(body)
    assert field in caught.value.errors
    assert count(session, SavedView) == 0


# --- the RPC entrypoints ---------------------------------------------------------

def test_the_entrypoints_serve_contacts_follow_ups_and_views(session, as_alice):
    service = worker_factory(CustomersService, db=session, context=as_alice)
    customer = service.create_customer({"kind": "company", "name": "Via RPC"})
    contact = service.create_contact(customer["id"], {"name": "Li Wei"})
    assert service.get_contact(customer["id"], contact["id"])["name"] == "Li Wei"
    assert service.update_contact(customer["id"], contact["id"], {"title": "CEO"}, 1)["version"] == 2
    assert [c["id"] for c in service.list_contacts(customer["id"])["items"]] == [contact["id"]]
    service.delete_contact(customer["id"], contact["id"])
    assert service.list_contacts(customer["id"])["items"] == []

    logged = service.log_followup(customer["id"], {
        "type": "call", "summary": "hello", "next_followup_at": iso(utcnow() + timedelta(hours=1))})
    assert service.get_followup(logged["id"])["summary"] == "hello"
    assert service.list_followups(customer["id"])["items"][0]["id"] == logged["id"]
    assert [f["id"] for f in service.due_followups(due_before=iso(utcnow() + timedelta(days=1)))["items"]] \
        == [logged["id"]]

    view = service.create_view({"name": "All mine", "filters": {"owner_id": ALICE}})
    assert service.get_view(view["id"])["filters"] == {"owner_id": ALICE}
    assert [v["id"] for v in service.list_views()["items"]] == [view["id"]]
    service.delete_view(view["id"])
    assert service.list_views()["items"] == []
