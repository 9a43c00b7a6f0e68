"""crm_common.outbox housekeeping: published rows are purged after the retention time, and a
person's erasure deletes the published rows that carry them; pending rows are never touched."""
from datetime import timedelta

from sqlalchemy import MetaData, select, text, update

from crm_common.context import RequestContext
from crm_common.outbox import (
    OutboxRelay, delete_published_mentioning, outbox_table, purge_published, record_event, retention_hours,
)
from crm_common.testing import memory_session
from crm_common.types import utcnow

CONTEXT = RequestContext(request_id="r-1", user_id="u-1", role="admin")


def rows(session):
    return session.execute(select(outbox_table.c.event_type, outbox_table.c.published_at)
                           .order_by(outbox_table.c.id)).all()


def published(session, event_type, at):
    record_event(session, "tests", event_type, {"customer_id": event_type}, CONTEXT)
    session.execute(update(outbox_table).where(outbox_table.c.event_type == event_type).values(published_at=at))


def test_published_rows_older_than_the_retention_are_purged_in_batches(monkeypatch):
    session = memory_session(MetaData())
    now = utcnow()
    for index in range(5):
        published(session, f"old.{index}", now - timedelta(hours=80))
    published(session, "recent", now - timedelta(hours=1))
    record_event(session, "tests", "pending", {}, CONTEXT)
    assert purge_published(session, now - timedelta(hours=72), batch_size=2) == 5
    assert [row.event_type for row in rows(session)] == ["recent", "pending"]
    monkeypatch.setenv("CRM_OUTBOX_RETENTION_HOURS", "0.5")
    assert retention_hours() == 0.5


def test_the_relay_purges_at_most_every_interval(monkeypatch):
    session = memory_session(MetaData())
    published(session, "old", utcnow() - timedelta(hours=100))
    session.commit()
    relay = OutboxRelay.__new__(OutboxRelay)  # no broker needed for the housekeeping part
    relay.service_name, relay._next_purge = "tests", 0.0
    relay._purge_if_due(session)
    assert rows(session) == []
    published(session, "old-again", utcnow() - timedelta(hours=100))
    session.commit()
    relay._purge_if_due(session)  # within the interval: nothing happens
    assert [row.event_type for row in rows(session)] == ["old-again"]


def test_published_rows_mentioning_a_text_are_deleted_and_pending_ones_stay():
    session = memory_session(MetaData())
    at = utcnow()
    record_event(session, "tests", "about.x", {"customer_id": "cust-x", "name": "X"}, CONTEXT)
    record_event(session, "tests", "about.y", {"customer_id": "cust-y"}, CONTEXT)
    session.execute(update(outbox_table).values(published_at=at))
    record_event(session, "tests", "pending.x", {"customer_id": "cust-x"}, CONTEXT)
    # Stored encrypted: matching happens after decryption, not in SQL.
    raw = session.execute(text("SELECT payload FROM crm_outbox")).scalars().all()
    assert not any("cust-x" in value for value in raw)
    assert delete_published_mentioning(session, ["cust-x"], batch_size=1) == 1
    assert [row.event_type for row in rows(session)] == ["about.y", "pending.x"]
