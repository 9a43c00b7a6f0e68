"""Idempotency-Key: a retried POST makes one record and gets the first answer."""
import pytest
from alembic import command as alembic_command
from sqlalchemy import text

from crm_common import crypto
from crm_common.db import make_engine, make_session_factory
from crm_common.errors import Conflict, NotFound, ValidationFailed
from crm_common.migrate import alembic_config, upgrade

from gateway import idempotency
from gateway.idempotency import IdempotentRequests, StoredOutcome, fingerprint
from gateway.models import IdempotencyRecord

from gateway_fakes import FakeCustomers
from gateway_support import assert_problem

USER = "00000000-0000-4000-8000-000000000001"


def counting_command(outcome):
    calls = []

    def command():
        calls.append(1)
        return outcome

    return command, calls


def test_the_same_key_and_request_runs_once_and_replays(session):
    command, calls = counting_command(StoredOutcome(201, {"Location": "/x/1"}, {"id": "1"}))
    first, replayed = IdempotentRequests(session).run(USER, "k1", "fp", command)
    session.commit()
    again, replayed_again = IdempotentRequests(session).run(USER, "k1", "fp", command)
    assert calls == [1]
    assert (replayed, replayed_again) == (False, True)
    assert (again.status, again.headers, again.body) == (201, {"Location": "/x/1"}, {"id": "1"})


def test_the_stored_answer_is_encrypted_at_rest_and_replayed_in_clear(session):
    answer = {"id": "1", "phones": ["+8613900003333"], "emails": ["wang.fang@example.cn"]}
    command, calls = counting_command(StoredOutcome(201, {"Location": "/x/1"}, answer))
    IdempotentRequests(session).run(USER, "k1", "fp", command)
    session.commit()
    stored = session.execute(text("SELECT body FROM idempotency_records")).scalar_one()
    assert crypto.is_encrypted(stored)
    assert "+8613900003333" not in stored and "wang.fang@example.cn" not in stored
    session.expire_all()
    again, replayed = IdempotentRequests(session).run(USER, "k1", "fp", command)
    assert replayed and again.body == answer and calls == [1]


def test_migration_0007_encrypts_the_bodies_stored_before_and_its_downgrade_decrypts_them(tmp_path):
    url = f"sqlite:///{tmp_path}/g.db"
    upgrade("gateway.migrations", url, "0006")
    body = '{"id":"1","phones":["+8613900004444"]}'
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO idempotency_records (user_id, key, fingerprint, created_at, status,"
                                " body) VALUES (:user, 'k1', 'fp', '2026-01-01', 201, :body)"),
                           {"user": USER, "body": body})
    upgrade("gateway.migrations", url)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT body FROM idempotency_records")).scalar_one()
    assert crypto.is_encrypted(stored) and "+8613900004444" not in stored
    with make_session_factory(engine)() as orm:
        assert orm.get(IdempotencyRecord, (USER, "k1")).body == body
    with engine.begin() as connection:
        config = alembic_config("gateway.migrations", url)
        config.attributes["connection"] = connection
        alembic_command.downgrade(config, "0006")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT body FROM idempotency_records")).scalar_one() == body
    engine.dispose()


def test_keys_belong_to_their_user(session):
    command, calls = counting_command(StoredOutcome(201, {}, {"id": "1"}))
    IdempotentRequests(session).run(USER, "k1", "fp", command)
    session.commit()
    IdempotentRequests(session).run("00000000-0000-4000-8000-000000000002", "k1", "fp", command)
    assert len(calls) == 2


def test_a_key_reused_for_another_request_is_refused(session):
    command, _ = counting_command(StoredOutcome(201, {}, {}))
    IdempotentRequests(session).run(USER, "k1", "fp-a", command)
    session.commit()
    with pytest.raises(ValidationFailed) as caught:
        IdempotentRequests(session).run(USER, "k1", "fp-b", command)
    assert idempotency.HEADER in caught.value.errors


def test_a_request_in_flight_makes_its_retry_wait(session):
    session.add(IdempotencyRecord(user_id=USER, key="k1", fingerprint="fp"))
    session.commit()
    command, calls = counting_command(StoredOutcome(201, {}, {}))
    with pytest.raises(Conflict):
        IdempotentRequests(session).run(USER, "k1", "fp", command)
    assert calls == []


def test_a_failed_request_frees_its_key(session):
    def failing():
        raise NotFound("no such owner")
    with pytest.raises(NotFound):
        IdempotentRequests(session).run(USER, "k1", "fp", failing)
    assert session.get(IdempotencyRecord, (USER, "k1")) is None
    command, calls = counting_command(StoredOutcome(201, {}, {"id": "2"}))
    outcome, replayed = IdempotentRequests(session).run(USER, "k1", "fp", command)
    assert calls == [1] and not replayed and outcome.body == {"id": "2"}


@pytest.mark.parametrize("key", ["", "x" * 201])
def test_a_malformed_key_is_refused(session, key):
    with pytest.raises(ValidationFailed):
        IdempotentRequests(session).run(USER, key, "fp", lambda: None)


def test_fingerprints_differ_by_body_not_by_key_order():
    assert fingerprint("POST", "/a", {"x": 1, "y": 2}) == fingerprint("POST", "/a", {"y": 2, "x": 1})
    assert fingerprint("POST", "/a", {"x": 1}) != fingerprint("POST", "/a", {"x": 2})


def test_a_retried_post_through_the_gateway_creates_one_customer(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeCustomers)
    body = {"kind": "person", "name": "Once Only"}
    headers = {"Idempotency-Key": "4f1c2d"}
    first = gateway.post("/api/v1/customers", token=admin_token, json=body, headers=headers)
    retry = gateway.post("/api/v1/customers", token=admin_token, json=body, headers=headers)
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["Location"] == first.headers["Location"]
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert [call["method"] for call in fake_calls].count("create_customer") == 1

    other = gateway.post("/api/v1/customers", token=admin_token, json={**body, "name": "Else"}, headers=headers)
    assert_problem(other, 422, "validation_failed")
    assert [call["method"] for call in fake_calls].count("create_customer") == 1
