"""crm_common.audit: entries written with the change, PII masked, registered models audited on flush."""
import uuid

import pytest
from sqlalchemy import JSON, Column, DateTime, Integer, String, select
from sqlalchemy.orm import declarative_base

from crm_common import jsonutil
from crm_common.audit import (
    AUDIT_EVENT, audit_model, context_from_worker_data, install_audit_listener, mask, mask_changes,
    record_audit, set_audit_context,
)
from crm_common.context import RequestContext
from crm_common.db import kernel_metadata, make_engine, make_session_factory
from crm_common.outbox import outbox_table
from crm_common.types import utcnow

Base = declarative_base()


class Thing(Base):
    __tablename__ = "audited_things"
    id = Column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    name = Column(String(100))
    email = Column(String(200))
    contact = Column(JSON)
    version = Column(Integer, default=1)
    deleted_at = Column(DateTime, nullable=True)


class Counter(Base):
    __tablename__ = "audited_counters"
    id = Column(Integer, primary_key=True, autoincrement=True)
    label = Column(String(50))


audit_model(Thing, "thing", "tests", pii_fields=("email", "phones"))
audit_model(Counter, "counter", "tests")

ALICE = RequestContext(request_id="req-a", user_id="user-a", role="sales", team_id="t1",
                       client_ip="203.0.113.9", api_key_id="key-1")


@pytest.fixture
def factory():
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    kernel_metadata.create_all(engine)
    return install_audit_listener(make_session_factory(engine))


def entries(session):
    rows = session.execute(select(outbox_table.c.event_type, outbox_table.c.payload)
                           .order_by(outbox_table.c.id)).all()
    return [jsonutil.loads(row.payload) for row in rows if row.event_type == AUDIT_EVENT]


# --- masking ----------------------------------------------------------------

def test_mask_keeps_enough_to_recognise_and_no_more():
    assert mask("jane.doe@example.com") == "j***@example.com"
    assert mask("+1 (555) 123-5678") == "*******5678"
    assert mask("Jane Doe") == "***"
    assert mask(12345) == "***"
    assert mask(None) is None
    assert mask("") == ""


def test_mask_changes_masks_named_fields_leaf_by_leaf_even_nested():
    changes = {
        "email": {"old": "a@x.org", "new": "b@y.org"},
        "contact": {"old": None, "new": {"phones": ["+44 20 7946 0958"], "city": "Leeds"}},
        "name": {"old": "A", "new": "B"},
    }
    masked = mask_changes(changes, ("email", "phones"))
    assert masked["email"] == {"old": "a***@x.org", "new": "b***@y.org"}
    assert masked["contact"]["new"] == {"phones": ["********0958"], "city": "Leeds"}
    assert masked["name"] == {"old": "A", "new": "B"}
    assert "7946" not in jsonutil.dumps(masked)


# --- record_audit -----------------------------------------------------------

def test_record_audit_writes_an_audit_event_in_the_callers_transaction(factory):
    session = factory()
    record_audit(session, ALICE, "tests", "thing.exported", "thing", "t-1", detail={"rows": 3})
    session.commit()
    [entry] = entries(session)
    assert entry["actor"]["user_id"] == "user-a" and entry["request_id"] == "req-a"
    data = entry["data"]
    assert data["action"] == "thing.exported" and data["entity_id"] == "t-1"
    assert data["client_ip"] == "203.0.113.9" and data["api_key_id"] == "key-1"
    assert data["outcome"] == "success" and data["detail"] == {"rows": 3}


def test_record_audit_refuses_an_unknown_outcome(factory):
    with pytest.raises(ValueError):
        record_audit(factory(), ALICE, "tests", "x.y", "x", "1", outcome="maybe")


# --- the flush listener -------------------------------------------------------

def test_create_update_soft_delete_and_restore_are_audited(factory):
    session = set_audit_context(factory(), ALICE)
    thing = Thing(name="Acme", email="jane@example.com", contact={"phones": ["+15551235678"]})
    session.add(thing)
    session.commit()
    thing.name = "Acme Ltd"
    thing.version = 2  # ignored: says nothing
    session.commit()
    thing.deleted_at = utcnow().replace(tzinfo=None)
    session.commit()
    thing.deleted_at = None
    session.commit()
    session.delete(thing)
    session.commit()

    found = [entry["data"] for entry in entries(session)]
    assert [data["action"] for data in found] == [
        "thing.created", "thing.updated", "thing.deleted", "thing.restored", "thing.deleted"]
    assert all(data["entity_id"] == thing.id and data["actor_id"] == "user-a" for data in found)
    created = found[0]["changes"]
    assert created["email"] == {"old": None, "new": "j***@example.com"}
    assert created["contact"]["new"] == {"phones": ["*******5678"]}
    assert found[1]["changes"] == {"name": {"old": "Acme", "new": "Acme Ltd"}}
    assert "5551235678" not in jsonutil.dumps(found)


def test_generated_primary_keys_are_known_to_the_entry(factory):
    session = factory()
    session.add(Counter(label="one"))
    session.commit()
    [entry] = entries(session)
    assert entry["data"]["entity_id"] == "1"
    assert entry["data"]["actor_role"] == "system"  # no context: the system's


def test_a_rolled_back_change_leaves_no_entry(factory):
    session = set_audit_context(factory(), ALICE)
    session.add(Thing(name="gone"))
    session.flush()
    session.rollback()
    assert entries(session) == []


def test_an_unchanged_flush_writes_nothing(factory):
    session = factory()
    thing = Thing(name="same")
    session.add(thing)
    session.commit()
    thing.name = "same"
    session.commit()
    assert [entry["data"]["action"] for entry in entries(session)] == ["thing.created"]


def test_the_context_is_read_when_the_flush_happens(factory):
    data = {"request_id": "r1", "user_id": "u1", "user_role": "manager"}
    session = set_audit_context(factory(), lambda: context_from_worker_data(data))
    data.update({"request_id": "r2", "user_id": "u2"})  # RunAs switched the actor
    session.add(Thing(name="x"))
    session.commit()
    [entry] = entries(session)
    assert entry["data"]["actor_id"] == "u2" and entry["request_id"] == "r2"
    assert context_from_worker_data({}).role == "system"
