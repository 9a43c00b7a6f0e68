import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from crm_common.consumer import processed_events_table
from crm_common.context import RequestContext
from crm_common.errors import Forbidden, NotFound, ValidationFailed

from notifications.domain import Inbox, notify_customer_assigned, notify_customers_imported
from notifications.models import Notification

ALICE = "00000000-0000-4000-8000-00000000000a"
BOB = "00000000-0000-4000-8000-00000000000b"
ADMIN = "00000000-0000-4000-8000-0000000000ad"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def count(session, table=Notification.__table__):
    return session.execute(select(func.count()).select_from(table)).scalar()


def add(session, user_id, minutes, read=False, title=None):
    notification = Notification(
        user_id=user_id, type="test", title=title or f"at {minutes}", body=None, data={},
        created_at=T0 + timedelta(minutes=minutes),
        read_at=T0 + timedelta(hours=1) if read else None)
    session.add(notification)
    session.flush()
    return notification


def walk(inbox, limit):
    titles, cursor, pages = [], None, 0
    while True:
        page = inbox.list(limit=limit, cursor=cursor)
        assert len(page["items"]) <= limit
        titles += [item["title"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return titles, pages


def test_new_owner_is_told_with_the_customer_id(session, as_alice, assigned):
    event = assigned(owner_id=ALICE, name="Acme Ltd")
    made = notify_customer_assigned(session, event)
    assert made is not None
    inbox = Inbox(session, as_alice)
    assert inbox.unread_count() == 1
    [item] = inbox.list()["items"]
    assert item["type"] == "customer.assigned"
    assert item["title"] == "Customer Acme Ltd was assigned to you"
    assert item["data"]["customer_id"] == event["data"]["customer_id"]
    assert item["read"] is False and item["read_at"] is None
    assert session.get(Notification, made.id).source_event_id == event["event_id"]


def test_same_envelope_twice_notifies_once(session, as_alice, assigned):
    event = assigned()
    assert notify_customer_assigned(session, event) is not None
    assert notify_customer_assigned(session, dict(event)) is None
    assert Inbox(session, as_alice).unread_count() == 1


def test_no_notification_for_your_own_assignment(session, as_alice, assigned):
    assert notify_customer_assigned(session, assigned(owner_id=ALICE, actor_id=ALICE, role="sales")) is None
    assert count(session) == 0
    # ... but the event still counts as processed.
    assert count(session, processed_events_table) == 1


def test_no_notification_when_nobody_owns_the_customer(session, assigned):
    assert notify_customer_assigned(session, assigned(owner_id=None, previous_owner_id=ALICE)) is None
    assert count(session) == 0


def test_a_malformed_event_fails_and_records_nothing(session, assigned):
    event = assigned()
    del event["data"]["customer_id"]
    with pytest.raises(ValidationFailed) as caught:
        notify_customer_assigned(session, event)
    assert "customer_id" in caught.value.errors
    assert count(session, processed_events_table) == 0


def test_each_user_sees_only_their_own(session, as_alice, as_bob, assigned):
    notify_customer_assigned(session, assigned(owner_id=ALICE))
    notify_customer_assigned(session, assigned(owner_id=ALICE))
    notify_customer_assigned(session, assigned(owner_id=BOB))
    assert Inbox(session, as_alice).unread_count() == 2
    assert len(Inbox(session, as_alice).list()["items"]) == 2
    assert len(Inbox(session, as_bob).list()["items"]) == 1


def test_unread_first_then_newest_first(session, as_alice):
    add(session, ALICE, 1, read=True)
    add(session, ALICE, 2)
    add(session, ALICE, 3, read=True)
    add(session, ALICE, 4)
    add(session, BOB, 5)
    page = Inbox(session, as_alice).list()
    assert [item["title"] for item in page["items"]] == ["at 4", "at 2", "at 3", "at 1"]
    assert page["next_cursor"] is None


@pytest.mark.parametrize("unread, read, limit", [
    (0, 5, 2), (5, 0, 2), (3, 3, 2), (2, 3, 2), (4, 4, 2), (3, 4, 3), (1, 1, 1), (7, 5, 50),
])
def test_pages_cover_the_inbox_once_in_order(session, as_alice, unread, read, limit):
    for minute in range(read):
        add(session, ALICE, minute, read=True, title=f"read {minute}")
    for minute in range(unread):
        add(session, ALICE, minute, title=f"unread {minute}")
    expected = ([f"unread {m}" for m in reversed(range(unread))]
                + [f"read {m}" for m in reversed(range(read))])
    titles, pages = walk(Inbox(session, as_alice), limit)
    assert titles == expected
    # No empty trailing page, except for an empty inbox.
    assert pages == max(1, -(-len(expected) // limit))


def test_equal_timestamps_page_by_id(session, as_alice):
    for i in range(5):
        add(session, ALICE, 0, title=f"same {i}")
    titles, _ = walk(Inbox(session, as_alice), 2)
    assert sorted(titles) == [f"same {i}" for i in range(5)]
    assert len(titles) == 5


def test_reading_while_paging_skips_nothing(session, as_alice):
    for minute in range(4):
        add(session, ALICE, minute, title=f"n{minute}")
    inbox = Inbox(session, as_alice)
    first = inbox.list(limit=2)
    assert [item["title"] for item in first["items"]] == ["n3", "n2"]
    inbox.mark_read(first["items"][0]["id"])
    seen = [item["title"] for item in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = inbox.list(limit=2, cursor=cursor)
        seen += [item["title"] for item in page["items"]]
        cursor = page["next_cursor"]
    assert set(seen) == {"n0", "n1", "n2", "n3"}


def test_mark_read_is_for_the_owner_only(session, as_alice, as_bob, assigned):
    made = notify_customer_assigned(session, assigned(owner_id=ALICE))
    with pytest.raises(NotFound):
        Inbox(session, as_bob).mark_read(made.id)
    with pytest.raises(NotFound):
        Inbox(session, as_alice).mark_read("00000000-0000-4000-8000-000000000000")
    inbox = Inbox(session, as_alice)
    marked = inbox.mark_read(made.id)
    assert marked["read"] is True and marked["read_at"] is not None
    assert inbox.unread_count() == 0
    assert inbox.mark_read(made.id)["read_at"] == marked["read_at"]


def test_bad_cursor_and_limit_are_refused(session, as_alice):
    inbox = Inbox(session, as_alice)
    for cursor in ("nonsense", "x.abc", "u.!!!"):
        with pytest.raises(ValidationFailed) as caught:
            inbox.list(cursor=cursor)
        assert "cursor" in caught.value.errors
    with pytest.raises(ValidationFailed) as caught:
        inbox.list(limit=500)
    assert "limit" in caught.value.errors


def test_an_anonymous_caller_has_no_inbox(session):
    with pytest.raises(Forbidden):
        Inbox(session, RequestContext(role="admin")).list()


def imported(customers, actor_id=ADMIN):
    return {"event_id": str(uuid.uuid4()), "type": "customer.imported", "version": 1,
            "occurred_at": datetime.now(timezone.utc).isoformat(), "producer": "customers",
            "actor": {"user_id": actor_id, "role": "admin", "team_id": None}, "request_id": "r-import",
            "data": {"customers": customers}}


def test_an_import_tells_each_owner_once_with_a_count(session, as_alice, as_bob):
    customers = [{"id": str(uuid.uuid4()), "name": f"C{i}", "owner_id": ALICE} for i in range(3)]
    customers += [{"id": str(uuid.uuid4()), "name": "Solo", "owner_id": BOB},
                  {"id": str(uuid.uuid4()), "name": "Mine", "owner_id": ADMIN},
                  {"id": str(uuid.uuid4()), "name": "Nobody's", "owner_id": None}]
    envelope = imported(customers)
    notify_customers_imported(session, envelope)
    assert notify_customers_imported(session, envelope) == []  # redelivered: nothing new
    alice = Inbox(session, as_alice).list()["items"]
    assert [n["title"] for n in alice] == ["3 imported customers were assigned to you"]
    assert alice[0]["data"]["count"] == 3 and len(alice[0]["data"]["customer_ids"]) == 3
    bob = Inbox(session, as_bob).list()["items"]
    assert [n["title"] for n in bob] == ["Customer Solo was assigned to you"]
    assert count(session) == 2  # the importer is not told about their own customers
