"""What reporting copies from customers when it rebuilds (issue 6): every customer, deleted and merged ones
included, and every follow-up, a page at a time and exactly as the events carry them; and the count its
customer figures must match."""
import json

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select

from crm_common.errors import Forbidden, ValidationFailed
from crm_common.outbox import outbox_table

from customers.activity import Followups
from customers.domain import CustomerBook
from customers.service import CustomersService


def events(session, prefix):
    rows = session.execute(select(outbox_table.c.payload).order_by(outbox_table.c.id)).scalars()
    return [event for event in map(json.loads, rows) if event["type"].startswith(prefix)]


def walk(service, kind, limit):
    """Every item of a reporting feed, page by page; and how many pages it took."""
    items, cursor, pages = [], None, 0
    while True:
        page = service.reporting_page(kind, cursor, limit)
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return items, pages


@pytest.fixture
def book_of_five(session, as_alice, as_bob):
    """Five customers of two owners: one deleted, one merged into another; three remain."""
    alice, bob = CustomerBook(session, as_alice), CustomerBook(session, as_bob)
    kept = alice.create({"kind": "company", "name": "Kept Ltd"})
    deleted = alice.create({"kind": "company", "name": "Gone Ltd"})
    alice.delete(deleted["id"], expected_version=1)
    target = alice.create({"kind": "company", "name": "Target Ltd"})
    source = alice.create({"kind": "company", "name": "Source Ltd"})
    alice.merge(target["id"], {"source_id": source["id"]})
    bobs = bob.create({"kind": "company", "name": "Bob Co"})
    return {"kept": kept, "deleted": deleted, "target": target, "source": source, "bobs": bobs}


def test_customer_pages_walk_every_customer_once_as_the_events_show_them(session, as_admin, book_of_five):
    service = worker_factory(CustomersService, db=session, context=as_admin)
    items, pages = walk(service, "customers", 2)
    assert pages == 3
    by_id = {item["id"]: item for item in items}
    assert len(items) == len(by_id) == 5 and set(by_id) == {c["id"] for c in book_of_five.values()}
    assert by_id[book_of_five["deleted"]["id"]]["deleted_at"] is not None
    merged = by_id[book_of_five["source"]["id"]]
    assert merged["deleted_at"] is not None and merged["merged_into_id"] == book_of_five["target"]["id"]
    # Each customer reads exactly as its newest snapshot event, version included.
    newest = {}
    for event in events(session, "customer."):
        if event["type"] in ("customer.created", "customer.updated", "customer.deleted"):
            newest[event["data"]["id"]] = {k: v for k, v in event["data"].items() if k != "changes"}
    assert by_id == newest
    assert service.reporting_totals() == {"customers": 3}


def test_followup_pages_carry_each_follow_up_as_followup_logged_did(session, as_alice, as_admin, book_of_five):
    followups = Followups(session, as_alice)
    kept = book_of_five["kept"]["id"]
    for summary in ("first", "second", "third"):
        followups.log(kept, {"type": "call", "summary": summary})
    followups.log(book_of_five["target"]["id"], {"type": "visit", "summary": "on site"})
    items, pages = walk(worker_factory(CustomersService, db=session, context=as_admin), "followups", 3)
    published = [event["data"] for event in events(session, "followup.logged")]
    assert pages == 2 and len(items) == 4
    assert sorted(items, key=lambda f: f["id"]) == sorted(published, key=lambda f: f["id"])
    # "second" closed "first", "third" closed "second"; the other customer's first closed nothing.
    assert sorted(len(item["closed_followup_ids"]) for item in items) == [0, 0, 1, 1]


def test_only_admins_and_the_system_read_the_feed_and_bad_input_names_the_field(
        session, as_alice, as_east_manager, as_viewer, as_admin):
    for context in (as_alice, as_east_manager, as_viewer):
        service = worker_factory(CustomersService, db=session, context=context)
        with pytest.raises(Forbidden):
            service.reporting_page("customers")
        with pytest.raises(Forbidden):
            service.reporting_totals()
    # Kinds and limits are RecordFeed's and feed_page's (tested in services/common).
    service = worker_factory(CustomersService, db=session, context=as_admin)
    with pytest.raises(ValidationFailed) as refused:
        service.reporting_page("customers", "not a cursor!")
    assert "cursor" in refused.value.errors
    assert service.reporting_page("customers") == {"items": [], "next_cursor": None}
