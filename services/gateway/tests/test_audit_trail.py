"""The audit trail in the gateway: entries stored from events and written by the gateway itself,
GET /audit for admins with filters and pages, and a table the database refuses to rewrite."""
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from crm_common.context import RequestContext
from crm_common.db import make_engine, make_session_factory
from crm_common.errors import ValidationFailed
from crm_common.migrate import upgrade
from crm_common.types import utcnow

from gateway import audit_trail
from gateway.models import AuditEntry

from gateway_support import assert_problem

ADMIN = RequestContext(request_id="req-1", user_id="u-admin", role="admin", client_ip="198.51.100.7")


def envelope(action="customer.updated", entity_id="c-1", occurred_at=None, actor="u-7"):
    return {
        "event_id": str(uuid.uuid4()), "type": "audit.recorded", "version": 1, "producer": "customers",
        "occurred_at": (occurred_at or utcnow()).isoformat(), "actor": {"user_id": actor, "role": "sales"},
        "request_id": "req-9",
        "data": {"service": "customers", "occurred_at": (occurred_at or utcnow()).isoformat(), "actor_id": actor,
                 "actor_role": "sales", "api_key_id": None, "client_ip": "203.0.113.5", "request_id": "req-9",
                 "entity_type": action.split(".")[0], "entity_id": entity_id, "action": action,
                 "outcome": "success", "changes": {"tier": {"old": "B", "new": "A"}}, "detail": None},
    }


# --- the store --------------------------------------------------------------------

def test_an_event_is_stored_once_even_when_redelivered(session):
    event = envelope()
    assert audit_trail.store_recorded(session, event) is True
    assert audit_trail.store_recorded(session, event) is False
    session.commit()
    [entry] = session.query(AuditEntry).all()
    assert (entry.id, entry.actor_id, entry.client_ip, entry.request_id) == (
        event["event_id"], "u-7", "203.0.113.5", "req-9")
    assert entry.changes == {"tier": {"old": "B", "new": "A"}}


def test_filters_and_pages_newest_first(session):
    start = utcnow() - timedelta(hours=1)
    for minute in range(7):
        audit_trail.store_recorded(session, envelope(
            action="customer.updated" if minute % 2 else "customer.created", entity_id=f"c-{minute % 3}",
            occurred_at=start + timedelta(minutes=minute), actor="u-1" if minute < 4 else "u-2"))
    audit_trail.write_entry(session, ADMIN, "user.role_changed", "user", "u-9",
                            changes={"role": {"old": "sales", "new": "manager"}})
    session.commit()

    everything = audit_trail.list_entries(session, {})["items"]
    assert everything[0].action == "user.role_changed"  # the newest
    times = [entry.occurred_at for entry in everything]
    assert times == sorted(times, reverse=True)

    def ids(filters):
        return [entry.id for entry in audit_trail.list_entries(session, filters)["items"]]

    assert len(ids({"actor": "u-2"})) == 3
    assert len(ids({"action": "customer.created"})) == 4
    assert len(ids({"entity_type": "customer", "entity_id": "c-0"})) == 3
    assert len(ids({"from": start + timedelta(minutes=2), "to": start + timedelta(minutes=5)})) == 3

    seen, cursor = [], None
    while True:
        page = audit_trail.list_entries(session, {"entity_type": "customer"}, limit=3, cursor=cursor)
        seen += [entry.id for entry in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids({"entity_type": "customer"}) and len(seen) == 7


def test_a_bad_time_filter_names_the_field():
    with pytest.raises(ValidationFailed) as raised:
        audit_trail.parse_time_filter("from", "yesterday")
    assert "from" in raised.value.errors
    assert audit_trail.parse_time_filter("to", "2026-12-01T09:30:00Z").tzinfo is not None


# --- immutability, enforced by the database ----------------------------------------------

def _immutability(url):
    upgrade("gateway.migrations", url)
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            entry = audit_trail.write_entry(session, ADMIN, "user.logged_out", "user", "u-admin")
            session.commit()
            for statement in (f"UPDATE audit_entries SET action = 'x' WHERE id = '{entry.id}'",
                              f"DELETE FROM audit_entries WHERE id = '{entry.id}'"):
                with pytest.raises(DatabaseError, match="cannot be changed or deleted"):
                    session.execute(text(statement))
                session.rollback()
            assert session.get(AuditEntry, entry.id).action == "user.logged_out"
    finally:
        engine.dispose()


def test_the_database_refuses_to_change_or_delete_an_entry_on_sqlite(tmp_path):
    _immutability(f"sqlite:///{tmp_path / 'gateway.db'}")


def test_the_database_refuses_to_change_or_delete_an_entry_on_postgresql(pg_url):
    _immutability(pg_url)


# --- over HTTP --------------------------------------------------------------------------

def test_get_audit_is_for_admins_and_shows_sign_ins_refusals_and_role_changes(gateway, admin_token):
    failed = gateway.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong one"})
    assert failed.status_code == 401 and "audit" not in failed.text
    sales, sales_token = gateway.create_user(admin_token, "sales", "east", email="sam@example.com")

    refused = gateway.get("/api/v1/audit", token=sales_token)
    assert_problem(refused, 403, "forbidden")
    changed = gateway.request("PATCH", f"/api/v1/users/{sales['id']}", token=admin_token,
                              json={"role": "manager"})
    assert changed.status_code == 200, changed.text

    def entries(**params):
        response = gateway.get("/api/v1/audit", token=admin_token, params=params)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    [login_failure] = entries(action="user.login_failed")
    assert login_failure["actor_id"] is None and login_failure["outcome"] == "failure"
    assert login_failure["detail"]["email"] == "n***@example.com"
    assert login_failure["request_id"] == failed.headers["X-Request-ID"]
    assert login_failure["client_ip"] == "127.0.0.1"

    [refusal] = entries(action="permission.refused")
    assert refusal["actor_id"] == sales["id"] and refusal["outcome"] == "refused"
    assert refusal["request_id"] == refused.headers["X-Request-ID"]
    assert refusal["detail"]["route"] == "/api/v1/audit"

    [role_change] = entries(action="user.role_changed", entity_id=sales["id"])
    assert role_change["changes"] == {"role": {"old": "sales", "new": "manager"}}
    assert role_change["request_id"] == changed.headers["X-Request-ID"]

    created = entries(action="user.created", entity_id=sales["id"])[0]
    assert created["changes"]["email"]["new"] == "s***@example.com"
    assert "sam@example.com" not in gateway.get("/api/v1/audit", token=admin_token).text
    assert len(entries(action="user.login_succeeded")) >= 2

    first = gateway.get("/api/v1/audit", token=admin_token, params={"limit": 2}).json()
    second = gateway.get("/api/v1/audit", token=admin_token,
                         params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert not {item["id"] for item in first["items"]} & {item["id"] for item in second["items"]}

    bad = gateway.get("/api/v1/audit", token=admin_token, params={"from": "last week"})
    assert "from" in assert_problem(bad, 422, "validation_failed")["errors"]
    for method in ("PUT", "PATCH", "DELETE"):
        answer = gateway.request(method, f"/api/v1/audit/{role_change['id']}", token=admin_token)
        assert answer.status_code in (404, 405)
