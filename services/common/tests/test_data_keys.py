"""Key rotation in one service (crm_common.data_keys) and crmctl's key-file and report logic."""
import json
import os

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select, text

from crm_common import crypto
from crm_common.context import RequestContext
from crm_common.crmctl import keys as crmctl_keys
from crm_common.crmctl import main as crmctl_main
from crm_common.crmctl.common import CommandFailed, Failure
from crm_common.crmctl.rotation import format_report, problems
from crm_common.data_keys import UNENCRYPTED, DataKeyJobs, seal_column, unseal_column
from crm_common.db import kernel_metadata, make_engine, make_session_factory
from crm_common.errors import Forbidden
from crm_common.testing import TEST_BLIND_INDEX_KEY, TEST_DATA_KEYS

NEW_KEY = "test2:" + crypto.generate_key()

metadata = MetaData()
people = Table("people", metadata, Column("id", Integer, primary_key=True),
               Column("phone", crypto.EncryptedText), Column("label", String(20)))


@pytest.fixture
def sessions():
    engine = make_engine("sqlite://")
    metadata.create_all(engine)
    kernel_metadata.create_all(engine)
    yield make_session_factory(engine)
    engine.dispose()


def jobs(sessions, role="system"):
    return DataKeyJobs(sessions, [metadata, kernel_metadata], RequestContext(role=role, request_id="r1"), "tests")


def use_keys(monkeypatch, spec):
    monkeypatch.setenv("CRM_DATA_KEYS", spec)
    crypto.reset_keyring()


def test_rotation_moves_every_value_to_the_new_key_and_records_an_audit_entry(sessions, monkeypatch):
    with sessions() as session:
        session.execute(people.insert(), [{"id": i, "phone": f"+861390000{i:04d}"} for i in range(3)])
        session.execute(text("INSERT INTO people (id, phone) VALUES (9, '+8613900009999')"))  # from before encryption
        session.commit()
    use_keys(monkeypatch, f"{NEW_KEY},{TEST_DATA_KEYS}")

    result = jobs(sessions).rotate()

    assert (result["service"], result["current_key_id"]) == ("tests", "test2")
    assert result["reencrypted"]["people.phone"] == 4
    assert result["remaining"]["people.phone"] == 0 and not any(result["remaining"].values())
    with sessions() as session:
        raw = session.execute(text("SELECT phone FROM people ORDER BY id")).scalars().all()
        assert all(crypto.key_id(value) == "test2" for value in raw)
        assert session.execute(select(people.c.phone).where(people.c.id == 9)).scalar_one() == "+8613900009999"
        [payload] = session.execute(text("SELECT payload FROM crm_outbox")).scalars().all()
    entry = json.loads(crypto.decrypt(payload) if crypto.is_encrypted(payload) else payload)
    assert entry["type"] == "audit.recorded"
    assert entry["data"]["action"] == "keys.rotated" and entry["data"]["entity_id"] == "test2"
    assert entry["data"]["detail"]["reencrypted"]["people.phone"] == 4


def test_usage_counts_values_per_key_id_and_plain_text(sessions, monkeypatch):
    with sessions() as session:
        session.execute(people.insert(), [{"id": 1, "phone": "+8613900000001"}])
        session.commit()
    use_keys(monkeypatch, f"{NEW_KEY},{TEST_DATA_KEYS}")
    with sessions() as session:
        session.execute(people.insert(), [{"id": 2, "phone": "+8613900000002"}])
        session.execute(text("INSERT INTO people (id, phone) VALUES (3, 'plain')"))
        session.commit()
    usage = jobs(sessions, role="admin").usage()
    assert usage["current_key_id"] == "test2"
    assert usage["columns"]["people.phone"] == {"test1": 1, "test2": 1, UNENCRYPTED: 1}


@pytest.mark.parametrize("role", ["manager", "sales", "support", "viewer", None])
def test_only_admins_and_the_system_run_key_jobs(sessions, role):
    with pytest.raises(Forbidden):
        jobs(sessions, role=role).rotate()
    with pytest.raises(Forbidden):
        jobs(sessions, role=role).usage()


def test_seal_and_unseal_column_for_migrations(sessions):
    with sessions() as session:
        session.execute(text("INSERT INTO people (id, phone, label) VALUES (1, '+8613900000001', 'a'), (2, NULL, 'b')"))
        session.commit()
        connection = session.connection()
        assert seal_column(connection, "people", ["id"], "phone", batch_size=1) == 1
        assert seal_column(connection, "people", ["id"], "phone") == 0  # again: nothing left to do
        assert crypto.is_encrypted(session.execute(text("SELECT phone FROM people WHERE id = 1")).scalar_one())
        assert unseal_column(connection, "people", ["id"], "phone") == 1
        assert session.execute(text("SELECT phone FROM people WHERE id = 1")).scalar_one() == "+8613900000001"


# --- crmctl ---------------------------------------------------------------------------

@pytest.fixture
def key_file(tmp_path, monkeypatch):
    monkeypatch.delenv("CRM_DATA_KEYS", raising=False)
    monkeypatch.delenv("CRM_BLIND_INDEX_KEY", raising=False)
    path = str(tmp_path / "data-keys.json")
    monkeypatch.setenv("CRM_DATA_KEYS_FILE", path)
    crypto.reset_keyring()
    return path


def test_keys_new_adds_a_current_key_and_keeps_the_others(key_file, capsys):
    assert crmctl_keys.init_keys(key_file) == (key_file, True)
    before = json.load(open(key_file))
    assert crmctl_main(["keys", "new"]) == 0
    after = json.load(open(key_file))
    out = capsys.readouterr().out
    kid = after["current"]
    assert kid != before["current"] and kid in out
    assert after["keys"][before["current"]] == before["keys"][before["current"]]
    assert after["blind_index_key"] == before["blind_index_key"]
    assert after["keys"][kid] not in out and before["keys"][before["current"]] not in out  # never a key
    assert oct(os.stat(key_file).st_mode & 0o777) == "0o600"
    crypto.reset_keyring()
    assert crypto.current_key_id() == kid


def test_keys_new_print_env_for_env_configured_keys(monkeypatch, capsys):
    monkeypatch.setenv("CRM_DATA_KEYS", TEST_DATA_KEYS)
    monkeypatch.setenv("CRM_BLIND_INDEX_KEY", TEST_BLIND_INDEX_KEY)
    assert crmctl_main(["keys", "new"]) == 1  # nothing to write without --print-env
    assert crmctl_main(["keys", "new", "--print-env"]) == 0
    line = [line for line in capsys.readouterr().out.splitlines() if line.startswith("CRM_DATA_KEYS=")][0]
    ring = crypto.Keyring.from_env(line.split("=", 1)[1], TEST_BLIND_INDEX_KEY)
    assert ring.current != "test1" and set(ring.keys) == {ring.current, "test1"}


def usage(service, current, **counts):
    return {"service": service, "current_key_id": current, "keys": {},
            "columns": {"t.c": counts}}


def test_retire_removes_an_unused_old_key_and_refuses_otherwise(key_file, monkeypatch):
    crmctl_keys.init_keys(key_file)
    old = json.load(open(key_file))["current"]
    with pytest.raises(CommandFailed, match="current key"):
        crmctl_keys.retire_key(old, key_file)
    with pytest.raises(CommandFailed, match="no key 'nope'"):
        crmctl_keys.retire_key("nope", key_file)
    new = crmctl_keys.new_key(key_file)
    answers = {}
    monkeypatch.setattr(crmctl_keys, "call_every_service", lambda *args: answers)

    answers.update(a=usage("a", new, **{new: 3, old: 2}), b=Failure("no answer within 5 s"))
    with pytest.raises(CommandFailed) as refused:
        crmctl_keys.retire_key(old, key_file)
    assert f"a: 2 value(s) of t.c under {old}" in str(refused.value)
    assert "b: no answer within 5 s" in str(refused.value)
    assert old in json.load(open(key_file))["keys"]

    answers.update(a=usage("a", new, **{new: 5}), b=usage("b", old))
    with pytest.raises(CommandFailed, match="has not read the new key"):
        crmctl_keys.retire_key(old, key_file)

    answers.update(b=usage("b", new, **{UNENCRYPTED: 1}))
    crmctl_keys.retire_key(old, key_file)
    assert list(json.load(open(key_file))["keys"]) == [new]


def test_rotation_report_and_its_problems():
    done = {"service": "customers", "current_key_id": "k2", "reencrypted": {"customers.phones": 7},
            "remaining": {"customers.phones": 0}}
    left = {"service": "sales", "current_key_id": "k2", "reencrypted": {}, "remaining": {"crm_outbox.payload": 2}}
    stale = {"service": "gateway", "current_key_id": "k1", "reencrypted": {}, "remaining": {}}
    assert problems({"customers": done}) == []
    found = problems({"customers": done, "sales": left, "gateway": stale, "reporting": Failure("not running")})
    assert "sales: 2 value(s) still not under k2 (crm_outbox.payload 2)" in found
    assert "reporting: not running" in found
    assert any("disagree" in problem for problem in found)
    report = format_report({"customers": done, "reporting": Failure("not running")})
    assert "customers (current key k2)" in report and "customers.phones" in report
    assert "reporting: FAILED: not running" in report
