import json
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed, VersionMismatch
from crm_common.outbox import outbox_table
from crm_common.types import utcnow

from customers.custom_fields import CustomFieldCatalogue
from customers.domain import CustomerBook, to_dict
from customers.models import Contact, Customer, CustomerHistory, Followup
from conftest import ALICE, BOB, MANAGER


def events(session):
    """The outbox's events but the audit trail's (crm_common.audit)."""
    rows = session.execute(select(outbox_table.c.payload).where(outbox_table.c.event_type != "audit.recorded")
                           .order_by(outbox_table.c.id)).scalars()
    return [json.loads(row) for row in rows]


def person(name, email=None, **fields):
    """A valid person: a person needs a phone or an email."""
    return {"kind": "person", "name": name,
            "contact": {"emails": [email or f"{abs(hash(name))}@people.example"]}, **fields}


def company(name, **fields):
    return {"kind": "company", "name": name, **fields}


def names(page):
    return [c["name"] for c in page["items"]]


# --- creating ------------------------------------------------------------------

def test_create_normalises_input_and_records_created_and_assigned(session, as_alice):
    created = CustomerBook(session, as_alice).create({
        "kind": "company", "name": "  Acme Ltd ",
        "company": {"name": "Acme", "industry": "Retail", "size": "10-49", "website": "https://acme.example"},
        "contact": {"emails": ["Sales@ACME.example", "sales@acme.example"],
                    "phones": ["+86 138-0013-8000", "13800138000"],
                    "address": {"region": "East", "city": "Shanghai"}},
        "tags": [" vip", "vip", "east ", "  "],
    })
    assert created["name"] == "Acme Ltd"
    assert created["contact"]["emails"] == ["sales@acme.example"]
    # Written with and without country code: one number once in E.164.
    assert created["contact"]["phones"] == ["+8613800138000"]
    assert created["contact"]["address"]["city"] == "Shanghai"
    assert created["tags"] == ["east", "vip"]
    assert created["owner_id"] == ALICE
    assert created["lifecycle_stage"] == "lead"
    assert set(created["lifecycle_dates"]) == {"lead"}
    assert created["version"] == 1
    published = events(session)
    assert [e["type"] for e in published] == ["customer.created", "customer.assigned"]
    assert published[0]["data"]["id"] == created["id"]
    assert published[0]["actor"] == {"user_id": ALICE, "role": "sales", "team_id": "east"}
    assert published[1]["data"]["owner_id"] == ALICE


def test_phone_without_country_code_takes_the_default_region(session, as_alice, monkeypatch):
    monkeypatch.setenv("CRM_DEFAULT_PHONE_REGION", "GB")
    created = CustomerBook(session, as_alice).create(
        {"kind": "person", "name": "Londoner", "contact": {"phones": ["020 7946 0018"]}})
    assert created["contact"]["phones"] == ["+442079460018"]


@pytest.mark.parametrize("body, field", [
    ({"name": "No kind"}, "kind"),
    ({"kind": "company"}, "name"),
    ({"kind": "company", "name": "   "}, "name"),
    ({"kind": "alien", "name": "X"}, "kind"),
    ({"kind": "person", "name": "No way to reach"}, "contact"),
    ({"kind": "person", "name": "X", "contact": {"emails": ["not-an-email"]}}, "contact"),
    ({"kind": "person", "name": "X", "contact": {"phones": ["call me"]}}, "contact"),
    ({"kind": "person", "name": "X", "contact": {"phones": ["+86 123"]}}, "contact"),
    ({"kind": "company", "name": "X", "tier": "Z"}, "tier"),
    ({"kind": "company", "name": "X", "lifecycle_stage": "sleeping"}, "lifecycle_stage"),
    ({"kind": "company", "name": "X", "company": {"size": "huge"}}, "company"),
    ({"kind": "company", "name": "X", "company": {"website": "not a url"}}, "company"),
    ({"kind": "company", "name": "X", "version": 7}, "version"),
    ({"kind": "company", "name": "X", "id": "abc"}, "id"),
    ({"kind": "company", "name": "X", "custom_fields": {"nope": 1}}, "custom_fields.nope"),
])
def test_invalid_create_names_the_field_and_writes_nothing(session, as_alice, body, field):
    with pytest.raises(ValidationFailed) as caught:
        CustomerBook(session, as_alice).create(body)
    assert field in caught.value.errors
    assert events(session) == []
    assert session.execute(select(Customer)).first() is None


def test_bad_phone_message_says_how_to_write_it(session, as_alice):
    with pytest.raises(ValidationFailed) as caught:
        CustomerBook(session, as_alice).create({"kind": "person", "name": "X", "contact": {"phones": ["12"]}})
    assert "country code" in json.dumps(caught.value.errors)


def test_sales_cannot_assign_to_someone_else(session, as_alice):
    with pytest.raises(ValidationFailed) as caught:
        CustomerBook(session, as_alice).create(company("X", owner_id=BOB))
    assert "owner_id" in caught.value.errors


# --- who sees what ---------------------------------------------------------------

def test_sales_sees_only_own_customers(session, as_alice, as_bob):
    mine = CustomerBook(session, as_alice).create(company("Mine"))
    theirs = CustomerBook(session, as_bob).create(company("Theirs"))
    alice = CustomerBook(session, as_alice)
    assert [c["id"] for c in alice.list()["items"]] == [mine["id"]]
    for attempt in (lambda: alice.get(theirs["id"]), lambda: alice.update(theirs["id"], {"name": "hijack"}),
                    lambda: alice.delete(theirs["id"]), lambda: alice.history(theirs["id"])):
        with pytest.raises(NotFound):
            attempt()


def test_manager_sees_team_and_admin_sees_all(session, as_alice, as_bob, as_east_manager, as_admin):
    east = CustomerBook(session, as_alice).create(company("East"))
    west = CustomerBook(session, as_bob).create(company("West"))
    assert [c["id"] for c in CustomerBook(session, as_east_manager).list()["items"]] == [east["id"]]
    assert {c["id"] for c in CustomerBook(session, as_admin).list()["items"]} == {east["id"], west["id"]}


def test_viewer_reads_but_cannot_write(session, as_alice, as_viewer):
    created = CustomerBook(session, as_alice).create(company("Read me"))
    viewer = CustomerBook(session, as_viewer)
    assert viewer.get(created["id"]).name == "Read me"
    with pytest.raises(Forbidden):
        viewer.update(created["id"], {"name": "changed"})
    with pytest.raises(Forbidden):
        viewer.create(company("New"))


# --- changing, history, delete and restore ------------------------------------------

def test_update_checks_version_and_records_changes(session, as_alice):
    book = CustomerBook(session, as_alice)
    created = book.create(company("Old", tier="C"))
    with pytest.raises(VersionMismatch):
        book.update(created["id"], {"name": "New"}, expected_version=99)
    updated = book.update(created["id"], {"name": "New", "lifecycle_stage": "prospect"}, expected_version=1)
    assert updated["version"] == 2
    assert updated["name"] == "New"
    assert set(updated["lifecycle_dates"]) == {"lead", "prospect"}
    assert updated["lifecycle_changed_at"] >= created["lifecycle_changed_at"]
    event = events(session)[-1]
    assert event["type"] == "customer.updated"
    assert event["data"]["changes"]["name"] == {"old": "Old", "new": "New"}
    assert "tier" not in event["data"]["changes"]


def test_history_lists_every_change_field_by_field_newest_first(session, as_alice, as_east_manager):
    book = CustomerBook(session, as_alice)
    created = book.create(company("Hist", tier="C"))
    book.update(created["id"], {"tier": "A", "tags": ["key"]})
    CustomerBook(session, as_east_manager).update(created["id"], {"notes": "Met at fair"})
    entries = book.history(created["id"])["items"]
    assert [e["action"] for e in entries] == ["updated", "updated", "created"]
    assert entries[0]["changes"] == {"notes": {"old": None, "new": "Met at fair"}}
    assert entries[0]["actor_id"] == MANAGER and entries[0]["actor_role"] == "manager"
    assert entries[1]["changes"]["tier"] == {"old": "C", "new": "A"}
    assert entries[1]["changes"]["tags"] == {"old": [], "new": ["key"]}
    assert entries[2]["actor_id"] == ALICE and entries[2]["request_id"] == "r-alice"
    assert entries[0]["occurred_at"]


def test_owner_is_not_changed_by_patch(session, as_admin):
    book = CustomerBook(session, as_admin)
    created = book.create(company("X"))
    with pytest.raises(ValidationFailed) as caught:
        book.update(created["id"], {"owner_id": BOB})
    assert "owner_id" in caught.value.errors


def test_soft_delete_hides_and_restore_brings_back(session, as_alice, as_admin):
    book = CustomerBook(session, as_alice)
    created = book.create(company("Gone"))
    book.delete(created["id"], expected_version=1)
    assert book.list()["items"] == []
    with pytest.raises(NotFound):
        book.get(created["id"])
    with pytest.raises(Forbidden):
        book.list({"include_deleted": "true"})
    listed = CustomerBook(session, as_admin).list({"include_deleted": "true"})["items"]
    assert [c["id"] for c in listed] == [created["id"]] and listed[0]["deleted_at"]
    assert events(session)[-1]["type"] == "customer.deleted"

    restored = book.restore(created["id"])
    assert restored["deleted_at"] is None
    assert names(book.list()) == ["Gone"]
    assert events(session)[-1]["type"] == "customer.updated"
    assert [e["action"] for e in book.history(created["id"])["items"]][:2] == ["restored", "deleted"]
    with pytest.raises(Conflict):
        book.restore(created["id"])


def test_external_id_is_unique(session, as_alice):
    book = CustomerBook(session, as_alice)
    book.create(company("One", external_id="legacy-1"))
    with pytest.raises(Conflict):
        book.create(company("Two", external_id="legacy-1"), allow_duplicate=True)


# --- finding ---------------------------------------------------------------------

def test_keyword_search_ignores_case_and_accents_and_finds_parts_and_chinese(session, as_admin):
    book = CustomerBook(session, as_admin)
    book.create(person("Zoë Müller", company={"name": "Café Zürich"}))
    book.create(company("北京星辰科技有限公司"))
    book.create(company("100% Real"))
    assert names(book.list({"q": "MULLER"})) == ["Zoë Müller"]
    assert names(book.list({"q": "zuri"})) == ["Zoë Müller"]          # part of the company name
    assert names(book.list({"q": "zoe cafe"})) == ["Zoë Müller"]      # every word, anywhere
    assert names(book.list({"q": "星辰"})) == ["北京星辰科技有限公司"]
    assert names(book.list({"q": "%"})) == ["100% Real"]              # wildcards are literal


def test_contact_names_are_searchable(session, as_admin):
    book = CustomerBook(session, as_admin)
    created = book.create(company("Globex"))
    session.add(Contact(customer_id=created["id"], name="Hank Scorpio"))
    book.refresh_search(book.get(created["id"]))
    assert names(book.list({"q": "scorpio"})) == ["Globex"]


def test_filters_combine_and_tags_repeat(session, as_admin):
    book = CustomerBook(session, as_admin)
    book.create(company("A1", tags=["vip", "east"], industry="Retail", region="East", tier="A", source="fair"))
    book.create(company("A2", tags=["vip"], industry="Retail", region="West", tier="B"))
    book.create(company("A3", tags=["east"], industry="Energy", region="East", lifecycle_stage="customer"))
    assert names(book.list({"tag": ["vip", "east"]})) == ["A1"]
    assert sorted(names(book.list({"tag": "vip"}))) == ["A1", "A2"]
    assert sorted(names(book.list({"industry": "Retail"}))) == ["A1", "A2"]
    assert names(book.list({"region": "East", "lifecycle_stage": "customer"})) == ["A3"]
    assert names(book.list({"source": "fair"})) == ["A1"]
    assert names(book.list({"tier": "B"})) == ["A2"]
    assert names(book.list(sort="tier")) == ["A1", "A2", "A3"]       # no tier sorts last
    assert names(book.list(sort="-tier")) == ["A3", "A2", "A1"]


def test_created_range_and_followup_due_filters(session, as_admin):
    book = CustomerBook(session, as_admin)
    old = book.create(company("Old"))
    session.get(Customer, old["id"]).created_at = utcnow() - timedelta(days=30)
    due = book.create(company("Due"))
    session.get(Customer, due["id"]).next_followup_at = utcnow() - timedelta(hours=1)
    later = book.create(company("Later"))
    session.get(Customer, later["id"]).next_followup_at = utcnow() + timedelta(days=3)
    session.flush()
    since = (utcnow() - timedelta(days=1)).isoformat()
    assert sorted(names(book.list({"created_from": since}))) == ["Due", "Later"]
    assert names(book.list({"created_to": since})) == ["Old"]
    assert names(book.list({"has_followup_due": "true"})) == ["Due"]
    assert sorted(names(book.list({"has_followup_due": "false"}))) == ["Later", "Old"]
    with pytest.raises(ValidationFailed) as caught:
        book.list({"created_from": since, "created_to": "2000-01-01T00:00:00Z"})
    assert "created_to" in caught.value.errors


def test_exact_lookup_by_phone_or_email_in_any_spelling(session, as_admin):
    book = CustomerBook(session, as_admin)
    book.create({"kind": "person", "name": "Li Lei", "contact": {"phones": ["+86 138 0013 8000"],
                                                                "emails": ["li@lei.example"]}})
    book.create(person("Han Meimei"))
    assert names(book.list({"phone": "138-0013-8000"})) == ["Li Lei"]
    assert names(book.list({"email": "LI@lei.example"})) == ["Li Lei"]
    assert names(book.list({"email": "nobody@x.example"})) == []


def test_list_pages_with_cursor_and_refuses_bad_sort_or_filter(session, as_admin):
    book = CustomerBook(session, as_admin)
    for i in range(7):
        book.create(company(f"Customer {i:02d}"))
    seen, cursor = [], None
    while True:
        page = book.list(limit=3, cursor=cursor, sort="name")
        seen += names(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"Customer {i:02d}" for i in range(7)]
    tiers, cursor = [], None
    while True:
        page = book.list(limit=2, cursor=cursor, sort="tier")
        tiers += names(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(tiers) == 7 and len(set(tiers)) == 7
    with pytest.raises(ValidationFailed) as caught:
        book.list(sort="-password")
    assert "sort" in caught.value.errors
    with pytest.raises(ValidationFailed) as caught:
        book.list({"colour": "red"})
    assert "colour" in caught.value.errors


# --- duplicates and merge --------------------------------------------------------

def test_duplicate_by_phone_email_or_name_and_company_is_refused_with_candidates(session, as_alice, as_bob):
    alice = CustomerBook(session, as_alice)
    first = alice.create({"kind": "person", "name": "Wang Fang", "company": {"name": "Sino Trade Co., Ltd."},
                          "contact": {"phones": ["+86 138 0013 8000"], "emails": ["wang@sino.example"]}})
    for clash in (
        {"kind": "person", "name": "Someone", "contact": {"phones": ["13800138000"]}},
        {"kind": "person", "name": "Someone", "contact": {"emails": ["WANG@sino.example"]}},
        {"kind": "person", "name": "wang  fang", "company": {"name": "SINO TRADE"}, "contact": {"emails": ["x@y.example"]}},
    ):
        with pytest.raises(Conflict) as caught:
            alice.create(clash)
        assert caught.value.extra["candidates"][0]["id"] == first["id"]
        assert caught.value.extra["candidates"][0]["reasons"]
    # Someone else's customer: the candidate says whose it is, not what it is.
    with pytest.raises(Conflict) as caught:
        CustomerBook(session, as_bob).create({"kind": "person", "name": "B", "contact": {"phones": ["13800138000"]}})
    assert caught.value.extra["candidates"] == [
        {"id": None, "name": None, "owner_id": ALICE, "reasons": ["same phone: +8613800138000"]}]
    forced = alice.create({"kind": "person", "name": "Other", "contact": {"phones": ["13800138000"]}},
                          allow_duplicate=True)
    found = alice.duplicates(forced["id"])["items"]
    assert [(c["id"], c["reasons"]) for c in found] == [(first["id"], ["same phone: +8613800138000"])]


def test_merge_moves_children_keeps_target_values_and_soft_deletes_source(session, as_alice):
    book = CustomerBook(session, as_alice)
    target = book.create({"kind": "person", "name": "Target", "tier": "A", "tags": ["vip"], "notes": "target notes",
                          "contact": {"emails": ["t@x.example"]}})
    source = book.create({"kind": "person", "name": "Source", "tier": "C", "tags": ["east"], "notes": "source notes",
                          "contact": {"phones": ["13800138000"]}}, allow_duplicate=True)
    session.add(Contact(customer_id=source["id"], name="Moved Contact"))
    session.add(Followup(customer_id=source["id"], type="call", occurred_at=utcnow(), summary="called"))
    session.flush()
    merged = book.merge(target["id"], {"source_id": source["id"], "take_from_source": ["notes"]})
    assert merged["name"] == "Target" and merged["tier"] == "A"
    assert merged["notes"] == "source notes"
    assert merged["tags"] == ["east", "vip"]
    assert merged["contact"]["phones"] == ["+8613800138000"] and merged["contact"]["emails"] == ["t@x.example"]
    assert session.execute(select(Contact.customer_id)).scalar_one() == target["id"]
    assert session.execute(select(Followup.customer_id)).scalar_one() == target["id"]
    with pytest.raises(NotFound):
        book.get(source["id"])
    assert session.get(Customer, source["id"]).merged_into_id == target["id"]
    assert names(book.list({"phone": "13800138000"})) == ["Target"]
    assert book.history(target["id"])["items"][0]["action"] == "merged"
    actions = session.execute(select(CustomerHistory.action).where(
        CustomerHistory.customer_id == source["id"])).scalars().all()
    assert "merged_into" in actions
    assert [e["type"] for e in events(session)[-3:]] == ["customer.deleted", "customer.updated", "customer.merged"]
    assert events(session)[-1]["data"]["source_id"] == source["id"]
    with pytest.raises(Conflict):
        book.restore(source["id"])


@pytest.mark.parametrize("body, field", [
    ({}, "source_id"),
    ({"source_id": "not-a-uuid"}, "source_id"),
    ({"source_id": "00000000-0000-4000-8000-000000000999"}, "source_id"),
    ({"source_id": "SELF"}, "source_id"),
    ({"source_id": "SELF", "take_from_source": ["owner_id"]}, "take_from_source"),
])
def test_bad_merge_names_the_field_and_changes_nothing(session, as_alice, body, field):
    book = CustomerBook(session, as_alice)
    target = book.create(company("T"))
    body = {key: (target["id"] if value == "SELF" else value) for key, value in body.items()}
    before = len(events(session))
    with pytest.raises(ValidationFailed) as caught:
        book.merge(target["id"], body)
    assert field in caught.value.errors
    assert len(events(session)) == before


# --- assignment -------------------------------------------------------------------

def test_manager_assigns_within_team_and_open_next_steps_follow(session, as_alice, as_east_manager):
    created = CustomerBook(session, as_alice).create(company("Hand over"))
    session.add(Followup(customer_id=created["id"], type="call", occurred_at=utcnow(), summary="s",
                         next_followup_at=utcnow(), owner_id=ALICE, owner_team_id="east"))
    session.flush()
    manager = CustomerBook(session, as_east_manager)
    assigned = manager.assign(created["id"], {"owner_id": MANAGER}, owner_team_id="east")
    assert assigned["owner_id"] == MANAGER
    assert session.execute(select(Followup.owner_id)).scalar_one() == MANAGER
    event = events(session)[-1]
    assert event["type"] == "customer.assigned"
    assert event["data"]["previous_owner_id"] == ALICE
    assert manager.history(created["id"])["items"][0]["changes"]["owner_id"] == {"old": ALICE, "new": MANAGER}
    with pytest.raises(ValidationFailed) as caught:
        manager.assign(created["id"], {"owner_id": BOB}, owner_team_id="west")
    assert "owner_id" in caught.value.errors


def test_sales_cannot_assign(session, as_alice):
    created = CustomerBook(session, as_alice).create(company("Mine"))
    with pytest.raises(Forbidden):
        CustomerBook(session, as_alice).assign(created["id"], {"owner_id": BOB}, owner_team_id="west")


def test_bulk_assign_is_all_or_nothing(session, as_alice, as_bob, as_admin, as_east_manager):
    east = [CustomerBook(session, as_alice).create(company(f"E{i}"))["id"] for i in range(3)]
    west = CustomerBook(session, as_bob).create(company("W"))["id"]
    result = CustomerBook(session, as_admin).bulk_assign({"customer_ids": east, "owner_id": BOB}, owner_team_id="west")
    assert {c["owner_id"] for c in result["items"]} == {BOB}
    manager = CustomerBook(session, as_east_manager)
    with pytest.raises(ValidationFailed) as caught:
        manager.bulk_assign({"customer_ids": [west], "owner_id": MANAGER}, owner_team_id="east")
    assert "customer_ids" in caught.value.errors
    with pytest.raises(ValidationFailed) as caught:
        CustomerBook(session, as_admin).bulk_assign({"customer_ids": [], "owner_id": BOB}, owner_team_id="west")
    assert "customer_ids" in caught.value.errors


# --- custom fields ------------------------------------------------------------------

def test_custom_fields_are_checked_against_their_definitions(session, as_admin, as_alice):
    catalogue = CustomFieldCatalogue(session, as_admin)
    catalogue.define({"key": "employees", "label": "Employees", "type": "number"})
    catalogue.define({"key": "segment", "label": "Segment", "type": "choice", "choices": ["smb", "enterprise"]})
    catalogue.define({"key": "founded", "label": "Founded", "type": "date"})
    with pytest.raises(Conflict):
        catalogue.define({"key": "segment", "label": "Again", "type": "text"})
    with pytest.raises(Forbidden):
        CustomFieldCatalogue(session, as_alice).define({"key": "x", "label": "X", "type": "text"})
    with pytest.raises(ValidationFailed) as caught:
        catalogue.define({"key": "Bad Key", "label": "X", "type": "text"})
    assert "key" in caught.value.errors
    with pytest.raises(ValidationFailed) as caught:
        catalogue.define({"key": "kind_of", "label": "X", "type": "choice"})
    assert "choices" in caught.value.errors
    assert [d["key"] for d in catalogue.list()["items"]] == ["employees", "founded", "segment"]

    book = CustomerBook(session, as_alice)
    created = book.create(company("Custom", custom_fields={"employees": 40, "segment": "smb", "founded": "2001-02-03"}))
    assert created["custom_fields"] == {"employees": 40, "segment": "smb", "founded": "2001-02-03"}
    with pytest.raises(ValidationFailed) as caught:
        book.update(created["id"], {"custom_fields": {"employees": "many", "segment": "huge", "founded": "03/02/2001"}})
    assert set(caught.value.errors) == {"custom_fields.employees", "custom_fields.segment", "custom_fields.founded"}
    updated = book.update(created["id"], {"custom_fields": {"segment": "enterprise", "founded": None}})
    assert updated["custom_fields"] == {"employees": 40, "segment": "enterprise"}


def test_required_custom_field_must_be_given(session, as_admin, as_alice):
    CustomFieldCatalogue(session, as_admin).define({"key": "vat", "label": "VAT number", "type": "text",
                                                     "required": True})
    with pytest.raises(ValidationFailed) as caught:
        CustomerBook(session, as_alice).create(company("No VAT"))
    assert caught.value.errors == {"custom_fields.vat": ["VAT number is required."]}


def test_a_create_delivered_again_after_it_committed_answers_with_its_own_customer(session, as_alice):
    # The instance that ran the create died before answering; the broker hands the same request
    # (same request id, same data) to another instance, which finds the first one's customer.
    data = {"kind": "person", "name": "Wang Fang", "contact": {"phones": ["+86 138 0013 8000"]}}
    first = CustomerBook(session, as_alice).create(dict(data))
    session.commit()
    again = CustomerBook(session, as_alice).create(dict(data))
    assert again["id"] == first["id"]
    assert session.execute(select(func.count()).select_from(Customer)).scalar() == 1
    # Another request with the same data is a duplicate, as before.
    with pytest.raises(Conflict):
        CustomerBook(session, replace(as_alice, request_id="r-alice-2")).create(dict(data))


def statements_of(session, action):
    """(what ``action()`` returns, the SQL statements it ran)."""
    from sqlalchemy import event

    statements = []
    engine = session.get_bind()
    listener = lambda *args: statements.append(args[2])  # noqa: E731 (conn, cursor, statement, ...)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        return action(), statements
    finally:
        event.remove(engine, "before_cursor_execute", listener)


def test_reading_a_customer_with_its_tags_is_one_query(session, as_alice):
    created = CustomerBook(session, as_alice).create({"kind": "company", "name": "One Trip Ltd", "tags": ["vip", "east"]})
    session.commit()
    session.expunge_all()
    read, statements = statements_of(session, lambda: to_dict(CustomerBook(session, as_alice).get(created["id"])))
    assert read["tags"] == ["east", "vip"]
    assert len(statements) == 1, statements


def test_a_page_of_customers_with_their_tags_is_one_query(session, as_alice):
    for number in range(3):
        CustomerBook(session, as_alice).create({"kind": "company", "name": f"Page {number} Ltd",
                                                "tags": ["vip", f"t{number}"]})
    session.commit()
    session.expunge_all()
    page, statements = statements_of(session, lambda: CustomerBook(session, as_alice).list({"q": "page"}, 2, None, None))
    # Two customers of three (a cursor for the third), each with its own tags, none repeated.
    assert [customer["tags"] for customer in page["items"]] == [["t2", "vip"], ["t1", "vip"]]
    assert page["next_cursor"] is not None
    assert len(statements) == 1, statements
