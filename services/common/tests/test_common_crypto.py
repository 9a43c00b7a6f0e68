"""crm_common.crypto: AES-GCM tokens, the keyring (env or file), blind indexes,
encrypted column types and re-encryption under a new key."""
import base64
import json
import os
import stat

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update

from crm_common import crypto
from crm_common.crypto import (
    CryptoError, EncryptedJson, EncryptedText, blind_index, count_stale_values, decrypt, encrypt,
    is_encrypted, key_id, reencrypt_columns,
)
from crm_common.db import make_engine, make_session_factory
from crm_common.testing import TEST_BLIND_INDEX_KEY

KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.b64encode(b"B" * 32).decode()
BLIND = base64.b64encode(b"I" * 32).decode()

people_metadata = MetaData()
people = Table(
    "people",
    people_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(50), nullable=False),
    Column("phone", EncryptedText, nullable=True),
    Column("contact", EncryptedJson, nullable=True),
    Column("edits", Integer, nullable=False, default=0, onupdate=lambda: 999),
)


def use_keys(monkeypatch, spec, blind=BLIND):
    monkeypatch.setenv("CRM_DATA_KEYS", spec)
    monkeypatch.setenv("CRM_BLIND_INDEX_KEY", blind)
    crypto.reset_keyring()


def use_file(monkeypatch, path):
    monkeypatch.delenv("CRM_DATA_KEYS", raising=False)
    monkeypatch.delenv("CRM_BLIND_INDEX_KEY", raising=False)
    monkeypatch.setenv("CRM_DATA_KEYS_FILE", str(path))
    crypto.reset_keyring()


# --- tokens ---------------------------------------------------------------

def test_round_trip_gives_back_the_text_and_never_shows_it():
    token = encrypt("+49 30 1234567 · Zoë")
    assert token.startswith("enc1:test1:")
    assert "1234567" not in token
    assert decrypt(token) == "+49 30 1234567 · Zoë"
    assert key_id(token) == "test1"
    assert is_encrypted(token)
    assert not is_encrypted("+49 30 1234567") and key_id("plain") is None and not is_encrypted(None)


def test_the_same_text_encrypts_differently_each_time():
    assert encrypt("x") != encrypt("x")
    assert decrypt(encrypt("")) == ""


def test_a_tampered_token_is_refused():
    token = encrypt("alice@example.com")
    prefix, body = token.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[-1] ^= 1
    tampered = prefix + ":" + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(CryptoError):
        decrypt(tampered)
    with pytest.raises(CryptoError):
        decrypt("enc1:test1:AAAA")
    with pytest.raises(CryptoError):
        decrypt("not a token")


def test_a_token_moved_under_another_key_id_is_refused(monkeypatch):
    """The key id is authenticated: relabelling a token fails even when both keys are equal."""
    use_keys(monkeypatch, f"k2:{KEY_A},k1:{KEY_A}")
    token = encrypt("secret")
    assert key_id(token) == "k2"
    with pytest.raises(CryptoError):
        decrypt(token.replace("enc1:k2:", "enc1:k1:"))


def test_an_unknown_key_id_is_refused(monkeypatch):
    use_keys(monkeypatch, f"k1:{KEY_A}")
    token = encrypt("secret")
    use_keys(monkeypatch, f"k2:{KEY_B}")
    with pytest.raises(CryptoError, match="unknown key id 'k1'"):
        decrypt(token)


def test_env_keys_first_is_current_and_old_ones_still_decrypt(monkeypatch):
    use_keys(monkeypatch, f"k1:{KEY_A}")
    old = encrypt("old value")
    use_keys(monkeypatch, f"k2:{KEY_B}, k1:{KEY_A}")
    assert crypto.current_key_id() == "k2"
    assert key_id(encrypt("new value")) == "k2"
    assert decrypt(old) == "old value"


@pytest.mark.parametrize("spec, message", [
    ("k1:not-base64!", "base64"),
    (f"k1:{base64.b64encode(b'short').decode()}", "32 bytes"),
    ("k 1:" + KEY_A, "key id"),
    ("justakey", "kid:"),
])
def test_bad_env_keys_are_refused_with_a_reason(monkeypatch, spec, message):
    use_keys(monkeypatch, spec)
    with pytest.raises(crypto.KeyConfigError, match=message):
        encrypt("x")


def test_env_keys_need_a_blind_index_key(monkeypatch):
    monkeypatch.setenv("CRM_DATA_KEYS", f"k1:{KEY_A}")
    monkeypatch.delenv("CRM_BLIND_INDEX_KEY")
    crypto.reset_keyring()
    with pytest.raises(crypto.KeyConfigError, match="CRM_BLIND_INDEX_KEY"):
        encrypt("x")


# --- key file ---------------------------------------------------------------

def test_the_key_file_is_created_on_first_use_owner_only(monkeypatch, tmp_path):
    monkeypatch.delenv("CRM_DATA_KEYS")
    monkeypatch.delenv("CRM_BLIND_INDEX_KEY")
    monkeypatch.delenv("CRM_DATA_KEYS_FILE", raising=False)
    monkeypatch.setenv("CRM_VAR_DIR", str(tmp_path))
    crypto.reset_keyring()
    token = encrypt("hello")
    path = tmp_path / "data-keys.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["current"] == "k1" and set(document["keys"]) == {"k1"}
    assert len(base64.b64decode(document["blind_index_key"])) == 32
    # Another process (a fresh keyring) reads the same file and decrypts.
    crypto.reset_keyring()
    assert decrypt(token) == "hello"
    assert [p.name for p in tmp_path.iterdir()] == ["data-keys.json"]


def test_creating_the_key_file_keeps_the_first_one_written(tmp_path):
    path = tmp_path / "keys.json"
    first = crypto.new_keys_document()
    assert crypto.write_keys_file(str(path), first, replace=False)
    assert not crypto.write_keys_file(str(path), crypto.new_keys_document(), replace=False)
    assert json.loads(path.read_text()) == first
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]


def test_a_file_keyring_reloads_when_the_file_changes(monkeypatch, tmp_path):
    path = tmp_path / "keys.json"
    crypto.write_keys_file(str(path), {"current": "k1", "keys": {"k1": KEY_A}, "blind_index_key": BLIND})
    use_file(monkeypatch, path)
    monkeypatch.setattr(crypto, "RELOAD_INTERVAL", 0.0)
    old = encrypt("before rotation")
    assert key_id(old) == "k1"

    crypto.write_keys_file(str(path), {"current": "k2", "keys": {"k2": KEY_B, "k1": KEY_A},
                                       "blind_index_key": BLIND})
    assert key_id(encrypt("after rotation")) == "k2"
    assert decrypt(old) == "before rotation"


def test_a_file_keyring_looks_at_the_file_at_most_every_reload_interval(monkeypatch, tmp_path):
    path = tmp_path / "keys.json"
    crypto.write_keys_file(str(path), {"current": "k1", "keys": {"k1": KEY_A}, "blind_index_key": BLIND})
    use_file(monkeypatch, path)
    monkeypatch.setattr(crypto, "RELOAD_INTERVAL", 3600.0)
    assert key_id(encrypt("x")) == "k1"
    crypto.write_keys_file(str(path), {"current": "k2", "keys": {"k2": KEY_B, "k1": KEY_A},
                                       "blind_index_key": BLIND})
    assert key_id(encrypt("x")) == "k1"
    # ... but a token under a key id it does not know yet makes it look at once.
    monkeypatch.setenv("CRM_DATA_KEYS", f"k2:{KEY_B}")
    monkeypatch.setenv("CRM_BLIND_INDEX_KEY", BLIND)
    crypto.reset_keyring()
    from_elsewhere = encrypt("from another process")
    use_file(monkeypatch, path)
    crypto.write_keys_file(str(path), {"current": "k1", "keys": {"k1": KEY_A}, "blind_index_key": BLIND})
    assert key_id(encrypt("x")) == "k1"
    crypto.write_keys_file(str(path), {"current": "k2", "keys": {"k2": KEY_B, "k1": KEY_A},
                                       "blind_index_key": BLIND})
    assert decrypt(from_elsewhere) == "from another process"
    assert key_id(encrypt("x")) == "k2"


def test_env_blind_index_key_overrides_the_file(monkeypatch, tmp_path):
    path = tmp_path / "keys.json"
    crypto.write_keys_file(str(path), {"current": "k1", "keys": {"k1": KEY_A}, "blind_index_key": BLIND})
    use_file(monkeypatch, path)
    from_file = blind_index("phone", "+4930123")
    monkeypatch.setenv("CRM_BLIND_INDEX_KEY", KEY_B)
    crypto.reset_keyring()
    assert blind_index("phone", "+4930123") != from_file


# --- blind index ------------------------------------------------------------

def test_blind_index_is_deterministic_keyed_and_separates_kinds(monkeypatch):
    first = blind_index("email", "alice@example.com")
    assert first == blind_index("email", "alice@example.com")
    assert len(first) == 64 and int(first, 16) >= 0
    assert "alice" not in first
    assert blind_index("phone", "alice@example.com") != first
    assert blind_index("email", "bob@example.com") != first
    # Rotating data keys does not move the blind index; another blind key does.
    use_keys(monkeypatch, f"k9:{KEY_B}", blind=TEST_BLIND_INDEX_KEY)
    assert blind_index("email", "alice@example.com") == first
    use_keys(monkeypatch, f"k9:{KEY_B}", blind=KEY_A)
    assert blind_index("email", "alice@example.com") != first


# --- column types -----------------------------------------------------------

def make_people_session(url):
    engine = make_engine(url)
    people_metadata.create_all(engine)
    return engine, make_session_factory(engine)


def test_encrypted_columns_store_ciphertext_and_read_back_values(tmp_path):
    engine, Session = make_people_session(f"sqlite:///{tmp_path / 'p.db'}")
    with Session() as session:
        session.execute(insert(people).values(name="a", phone="+4930111",
                                              contact={"emails": ["a@example.com"], "n": 1}))
        session.execute(insert(people).values(name="b", phone=None, contact=None))
        session.commit()
        rows = session.execute(select(people.c.phone, people.c.contact).order_by(people.c.id)).all()
    assert rows == [("+4930111", {"emails": ["a@example.com"], "n": 1}), (None, None)]
    with engine.connect() as connection:
        raw = connection.execute(text("SELECT phone, contact FROM people ORDER BY id")).all()
    assert is_encrypted(raw[0][0]) and is_encrypted(raw[0][1])
    assert "4930111" not in raw[0][0] and "example" not in raw[0][1]
    assert raw[1] == (None, None)


def test_plain_text_written_before_encryption_is_still_read(tmp_path):
    engine, Session = make_people_session(f"sqlite:///{tmp_path / 'p.db'}")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO people (name, phone, contact, edits) "
                                "VALUES ('old', '+4930', '{\"a\": 1}', 0)"))
    with Session() as session:
        assert session.execute(select(people.c.phone, people.c.contact)).one() == ("+4930", {"a": 1})


# --- re-encryption ----------------------------------------------------------

def fill_people(Session, count):
    with Session() as session:
        session.execute(insert(people), [
            {"name": f"p{n}", "phone": f"+49{n}", "contact": {"n": n}, "edits": 0} for n in range(count)])
        session.execute(insert(people).values(name="none", phone=None, contact=None, edits=0))
        session.commit()


def raw_values(engine):
    with engine.connect() as connection:
        return connection.execute(text("SELECT id, phone, contact, edits FROM people ORDER BY id")).all()


def check_reencrypt(monkeypatch, url):
    use_keys(monkeypatch, f"k1:{KEY_A}")
    engine, Session = make_people_session(url)
    fill_people(Session, 7)
    with engine.begin() as connection:  # one plain-text row from before encryption
        connection.execute(text("INSERT INTO people (name, phone, contact, edits) "
                                "VALUES ('legacy', '+4999', '{\"n\": 99}', 0)"))
    use_keys(monkeypatch, f"k2:{KEY_B},k1:{KEY_A}")
    assert count_stale_values(Session, [people_metadata]) == {"people.phone": 8, "people.contact": 8}

    result = reencrypt_columns(Session, [people_metadata], batch_size=3)

    assert result == {"people.phone": 8, "people.contact": 8}
    assert count_stale_values(Session, [people_metadata]) == {"people.phone": 0, "people.contact": 0}
    rows = raw_values(engine)
    assert all(key_id(phone) == "k2" and key_id(contact) == "k2"
               for _, phone, contact, _ in rows if phone is not None)
    assert all(edits == 0 for *_, edits in rows), "re-encryption is not an edit (no onupdate)"
    # Values read back the same, now without the old key at all.
    use_keys(monkeypatch, f"k2:{KEY_B}")
    with Session() as session:
        values = session.execute(select(people.c.name, people.c.phone, people.c.contact)
                                 .order_by(people.c.id)).all()
    assert values[:7] == [(f"p{n}", f"+49{n}", {"n": n}) for n in range(7)]
    assert values[7:] == [("none", None, None), ("legacy", "+4999", {"n": 99})]
    assert reencrypt_columns(Session, [people_metadata]) == {"people.phone": 0, "people.contact": 0}
    engine.dispose()


def check_concurrent_write_wins(monkeypatch, url):
    use_keys(monkeypatch, f"k1:{KEY_A}")
    engine, Session = make_people_session(url)
    fill_people(Session, 4)
    use_keys(monkeypatch, f"k2:{KEY_B},k1:{KEY_A}")
    writer = make_engine(url)
    real_encrypt = crypto.encrypt
    done = []

    def encrypt_racing_a_writer(value):
        # Between re-encryption's read of a batch and its update, a user changes a phone.
        # (The batch's first row: on SQLite the batch's first update takes the write lock.)
        if value == "+490" and not done:
            done.append(True)
            with writer.begin() as connection:
                connection.execute(update(people).where(people.c.name == "p0").values(phone="+49-new"))
        return real_encrypt(value)

    monkeypatch.setattr(crypto, "encrypt", encrypt_racing_a_writer)
    result = reencrypt_columns(Session, [people_metadata], batch_size=10)
    monkeypatch.setattr(crypto, "encrypt", real_encrypt)

    assert done
    assert result == {"people.phone": 3, "people.contact": 4}
    with Session() as session:
        phones = session.execute(select(people.c.phone).order_by(people.c.id)).scalars().all()
    assert phones == ["+49-new", "+491", "+492", "+493", None]
    assert count_stale_values(Session, [people_metadata]) == {"people.phone": 0, "people.contact": 0}
    writer.dispose()
    engine.dispose()


def test_reencrypt_columns_moves_every_value_to_the_current_key_sqlite(monkeypatch, tmp_path):
    check_reencrypt(monkeypatch, f"sqlite:///{tmp_path / 'p.db'}")


def test_reencrypt_columns_never_overwrites_a_concurrent_change_sqlite(monkeypatch, tmp_path):
    check_concurrent_write_wins(monkeypatch, f"sqlite:///{tmp_path / 'p.db'}")


def test_reencrypt_columns_moves_every_value_to_the_current_key_postgres(monkeypatch, pg_url):
    check_reencrypt(monkeypatch, pg_url)


def test_reencrypt_columns_never_overwrites_a_concurrent_change_postgres(monkeypatch, pg_url):
    check_concurrent_write_wins(monkeypatch, pg_url)


def test_reencrypt_skips_tables_the_database_does_not_have(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    Session = make_session_factory(engine)
    assert reencrypt_columns(Session, [people_metadata]) == {}
    assert count_stale_values(Session, [people_metadata]) == {}


def test_copy_and_executemany_bulk_inserts_store_ciphertext(monkeypatch, pg_url):
    from crm_common.bulk import COPY_MIN_ROWS, insert_rows

    engine, Session = make_people_session(pg_url)
    rows = [{"name": f"p{n}", "phone": f"+49{n}", "contact": {"n": n}, "edits": 0}
            for n in range(COPY_MIN_ROWS + 5)]
    with Session() as session:
        insert_rows(session, people, rows)          # COPY
        insert_rows(session, people, rows[:2])      # executemany
        session.commit()
        values = session.execute(select(people.c.phone, people.c.contact).order_by(people.c.id)).all()
    assert values[:3] == [("+490", {"n": 0}), ("+491", {"n": 1}), ("+492", {"n": 2})]
    raw = raw_values(engine)
    assert len(raw) == COPY_MIN_ROWS + 7
    assert all(is_encrypted(phone) and is_encrypted(contact) for _, phone, contact, _ in raw)
    engine.dispose()
