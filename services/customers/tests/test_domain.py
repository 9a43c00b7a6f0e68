import json

import pytest
from sqlalchemy import select

from crm_common.errors import Forbidden, NotFound, ValidationFailed, VersionMismatch
from crm_common.outbox import outbox_table

from customers.domain import CustomerBook
from conftest import ALICE, BOB


def events(session):
    rows = session.execute(select(outbox_table.c.payload).order_by(outbox_table.c.id)).scalars()
    return [json.loads(row) for row in rows]


def test_create_normalises_input_and_records_created_and_assigned(session, as_alice):
    created = CustomerBook(session, as_alice).create({
        "kind": "company", "name": "  Acme Ltd ", "email": "Sales@ACME.example",
        "phone": "+86 138-0013-8000", "tags": [" vip", "vip", "east "],
    })
    assert created["name"] == "Acme Ltd"
    assert created["email"] == "sales@acme.example"
    assert created["phone"] == "+8613800138000"
    assert created["tags"] == ["east", "vip"]
    assert created["owner_id"] == ALICE
    assert created["lifecycle_stage"] == "lead"
    assert created["version"] == 1
    published = events(session)
    assert [e["type"] for e in published] == ["customer.created", "customer.assigned"]
    assert published[0]["data"]["id"] == created["id"]
    assert published[0]["actor"] == {"user_id": ALICE, "role": "sales", "team_id": "east"}
    assert published[0]["request_id"] == "r-alice"
    assert published[1]["data"]["owner_id"] == ALICE
    assert published[1]["data"]["version"] == 1


@pytest.mark.parametrize("body, field", [
    ({"name": "No kind"}, "kind"),
    ({"kind": "person"}, "name"),
    ({"kind": "alien", "name": "X"}, "kind"),
    ({"kind": "person", "name": "X", "email": "not-an-email"}, "email"),
    ({"kind": "person", "name": "X", "phone": "call me"}, "phone"),
    ({"kind": "person", "name": "X", "tier": "Z"}, "tier"),
    ({"kind": "person", "name": "X", "version": 7}, "version"),
    ({"kind": "person", "name": "X", "id": "abc"}, "id"),
])
def test_invalid_create_names_the_field_and_writes_nothing(session, as_alice, body, field):
    with pytest.raises(ValidationFailed) as caught:
        CustomerBook(session, as_alice).create(body)
    assert field in caught.value.errors
    assert events(session) == []
    assert CustomerBook(session, as_alice).list()["items"] == []


def test_sales_cannot_assign_to_someone_else(session, as_alice):
    with pytest.raises(ValidationFailed) as caught:
        CustomerBook(session, as_alice).create({"kind": "person", "name": "X", "owner_id": BOB})
    assert "owner_id" in caught.value.errors


def test_sales_sees_only_own_customers(session, as_alice, as_bob):
    mine = CustomerBook(session, as_alice).create({"kind": "person", "name": "Mine"})
    theirs = CustomerBook(session, as_bob).create({"kind": "person", "name": "Theirs"})
    alice = CustomerBook(session, as_alice)
    assert [c["id"] for c in alice.list()["items"]] == [mine["id"]]
    with pytest.raises(NotFound):
        alice.get(theirs["id"])
    with pytest.raises(NotFound):
        alice.update(theirs["id"], {"name": "hijack"})
    with pytest.raises(NotFound):
        alice.delete(theirs["id"])


def test_manager_sees_team_and_admin_sees_all(session, as_alice, as_bob, as_east_manager, as_admin):
    east = CustomerBook(session, as_alice).create({"kind": "person", "name": "East"})
    west = CustomerBook(session, as_bob).create({"kind": "person", "name": "West"})
    assert [c["id"] for c in CustomerBook(session, as_east_manager).list()["items"]] == [east["id"]]
    assert {c["id"] for c in CustomerBook(session, as_admin).list()["items"]} == {east["id"], west["id"]}


def test_viewer_reads_but_cannot_write(session, as_alice, as_viewer):
    created = CustomerBook(session, as_alice).create({"kind": "person", "name": "Read me"})
    viewer = CustomerBook(session, as_viewer)
    assert viewer.get(created["id"]).name == "Read me"
    with pytest.raises(Forbidden):
        viewer.update(created["id"], {"name": "changed"})
    with pytest.raises(Forbidden):
        viewer.create({"kind": "person", "name": "New"})


def test_update_checks_version_and_records_changes(session, as_alice):
    book = CustomerBook(session, as_alice)
    created = book.create({"kind": "person", "name": "Old", "tier": "C"})
    with pytest.raises(VersionMismatch):
        book.update(created["id"], {"name": "New"}, expected_version=99)
    updated = book.update(created["id"], {"name": "New", "lifecycle_stage": "prospect"}, expected_version=1)
    assert updated["version"] == 2
    assert updated["name"] == "New"
    assert updated["lifecycle_changed_at"] >= created["lifecycle_changed_at"]
    event = events(session)[-1]
    assert event["type"] == "customer.updated"
    assert event["data"]["changes"]["name"] == {"old": "Old", "new": "New"}
    assert "tier" not in event["data"]["changes"]


def test_owner_is_not_changed_by_patch(session, as_admin):
    book = CustomerBook(session, as_admin)
    created = book.create({"kind": "person", "name": "X"})
    with pytest.raises(ValidationFailed) as caught:
        book.update(created["id"], {"owner_id": BOB})
    assert "owner_id" in caught.value.errors


def test_soft_delete_hides_from_lists_but_admin_can_include_deleted(session, as_alice, as_admin):
    book = CustomerBook(session, as_alice)
    created = book.create({"kind": "person", "name": "Gone"})
    book.delete(created["id"], expected_version=1)
    assert book.list()["items"] == []
    with pytest.raises(NotFound):
        book.get(created["id"])
    with pytest.raises(Forbidden):
        book.list({"include_deleted": "true"})
    listed = CustomerBook(session, as_admin).list({"include_deleted": "true"})["items"]
    assert [c["id"] for c in listed] == [created["id"]]
    assert listed[0]["deleted_at"] is not None
    assert events(session)[-1]["type"] == "customer.deleted"


def test_list_pages_with_cursor_filters_and_sort(session, as_admin):
    book = CustomerBook(session, as_admin)
    ids = [book.create({"kind": "person", "name": f"Customer {i:02d}",
                        "tags": ["vip"] if i % 2 else []})["id"] for i in range(7)]
    seen, cursor = [], None
    while True:
        page = book.list(limit=3, cursor=cursor, sort="name")
        seen += [c["name"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"Customer {i:02d}" for i in range(7)]
    vip = book.list({"tag": "vip"})["items"]
    assert len(vip) == 3
    assert [c["name"] for c in book.list({"q": "customer 03"})["items"]] == ["Customer 03"]
    with pytest.raises(ValidationFailed) as caught:
        book.list(sort="-password")
    assert "sort" in caught.value.errors
    with pytest.raises(ValidationFailed) as caught:
        book.list({"colour": "red"})
    assert "colour" in caught.value.errors
    assert len(ids) == 7


def test_search_treats_wildcards_literally(session, as_admin):
    book = CustomerBook(session, as_admin)
    book.create({"kind": "person", "name": "100% Real"})
    book.create({"kind": "person", "name": "Other"})
    assert [c["name"] for c in book.list({"q": "%"})["items"]] == ["100% Real"]
