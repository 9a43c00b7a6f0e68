"""Personal data is encrypted at rest: the tables hold no phone, email, street or ID number in
plain text, while exact lookup and duplicate detection by phone and email keep working."""
import json

import pytest
from sqlalchemy import create_engine, inspect, select, text

from crm_common.context import RequestContext
from crm_common.crypto import is_encrypted
from crm_common.db import make_engine, make_session_factory
from crm_common.errors import Conflict
from crm_common.migrate import upgrade
from crm_common.testing import postgres_database, schema_drift
from customers import imports
from customers.activity import Contacts
from customers.domain import CustomerBook
from customers.models import Base, Contact, Customer, CustomerHistory, ImportJob

from test_imports import csv_bytes, run_import
from conftest import model_drift

PHONE, PHONE_SPACED = "+8613800138000", "+86 138 0013 8000"
NEW_PHONE = "+8613900139000"
EMAIL = "wang.fang@secret.example"
STREET = "88 Hidden Garden Road"
ID_NUMBER = "G12345678X"
CONTACT_PHONE, CONTACT_EMAIL = "+8613700137000", "li.na@secret.example"
SECRETS = ("13800138000", "13900139000", "13700137000", "secret.example", "Hidden Garden", ID_NUMBER)
PII_TABLES = ("customers", "contacts", "customer_identifiers", "customer_history", "crm_outbox",
              "import_jobs", "import_job_events")


def raw_dump(session, tables=PII_TABLES):
    """Every stored value of the tables, as SQL reads them (no decryption)."""
    dump = {}
    for table in tables:
        rows = session.execute(text(f"SELECT * FROM {table}")).all()
        dump[table] = " ".join(value.decode("latin-1") if isinstance(value, bytes) else str(value)
                               for row in rows for value in row)
    return dump


def assert_no_plaintext(session, secrets=SECRETS):
    for table, stored in raw_dump(session).items():
        for secret in secrets:
            assert secret not in stored, f"{secret!r} in plain text in {table}"


def create_wang(book, kind="person"):
    return book.create({"kind": kind, "name": "Wang Fang", "contact": {
        "phones": [PHONE_SPACED], "emails": [EMAIL.upper()],
        "address": {"city": "Shanghai", "street": STREET}, "id_number": ID_NUMBER}})


def test_the_tables_hold_no_plaintext_personal_data(session, as_alice):
    book = CustomerBook(session, as_alice)
    created = create_wang(book, kind="company")  # only companies have contacts
    assert created["contact"] == {"phones": [PHONE], "emails": [EMAIL],
                                  "address": {"city": "Shanghai", "street": STREET}, "id_number": ID_NUMBER}
    Contacts(session, as_alice).create(created["id"], {
        "name": "Li Na", "phones": [CONTACT_PHONE], "emails": [CONTACT_EMAIL]})
    book.update(created["id"], {"contact": {"phones": [NEW_PHONE], "emails": [EMAIL],
                                            "address": {"street": STREET}, "id_number": ID_NUMBER}})
    session.commit()

    assert_no_plaintext(session)
    (contact,) = session.execute(text("SELECT contact FROM customers")).scalars()
    assert is_encrypted(contact)
    history = session.execute(text("SELECT action, changes FROM customer_history ORDER BY id")).all()
    # Every change left its line (all() over no lines would hold too), and each one is sealed.
    assert [action for action, _ in history] == ["created", "contact_added", "updated"]
    assert all(is_encrypted(changes) for _, changes in history)
    # Read through the models, everything is there.
    session.expire_all()
    customer = session.get(Customer, created["id"])
    assert customer.contact["phones"] == [NEW_PHONE] and customer.contact["id_number"] == ID_NUMBER
    assert session.execute(select(Contact.phones, Contact.emails)).one() == ([CONTACT_PHONE], [CONTACT_EMAIL])
    changes = [h.changes for h in session.execute(select(CustomerHistory).order_by(CustomerHistory.id)).scalars()]
    assert changes[-1]["contact"]["old"]["phones"] == [PHONE]
    assert changes[-1]["contact"]["new"]["phones"] == [NEW_PHONE]


def test_id_number_is_at_most_50_characters(session, as_alice):
    from crm_common.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as refused:
        CustomerBook(session, as_alice).create({"kind": "person", "name": "Too long", "contact": {
            "emails": ["a@b.example"], "id_number": "X" * 51}})
    assert "id_number" in json.dumps(refused.value.errors)


def test_lookup_by_phone_and_email_still_finds_the_customer(session, as_alice):
    book = CustomerBook(session, as_alice)
    created = create_wang(book)
    book.create({"kind": "person", "name": "Somebody Else", "contact": {"phones": ["+8613600136000"]}})
    session.commit()
    for filters in ({"phone": PHONE}, {"phone": PHONE_SPACED}, {"email": EMAIL}, {"email": EMAIL.upper()}):
        assert [c["id"] for c in book.list(filters)["items"]] == [created["id"]], filters
    assert book.list({"phone": "+8613500135000"})["items"] == []
    assert book.list({"email": "nobody@secret.example"})["items"] == []


def test_duplicate_detection_by_phone_and_email_still_works(session, as_alice):
    book = CustomerBook(session, as_alice)
    created = create_wang(book)
    session.commit()
    with pytest.raises(Conflict) as refused:
        book.create({"kind": "person", "name": "W. Fang", "contact": {"phones": [PHONE]}})
    (candidate,) = refused.value.extra["candidates"]
    assert candidate["id"] == created["id"] and candidate["reasons"] == [f"same phone: {PHONE}"]
    other = book.create({"kind": "person", "name": "Fang W.", "contact": {"emails": [EMAIL]}},
                        allow_duplicate=True)
    found = book.duplicates(other["id"])["items"]
    assert [(c["id"], c["reasons"]) for c in found] == [(created["id"], [f"same email: {EMAIL}"])]


def test_imports_store_ciphertext_and_blind_indexes(session, as_alice):
    rows = [[f"X{n}", f"Imported {n}", f"+86137{n:08d}", f"p{n}@secret.example", "", "", "", ""]
            for n in range(1200)]
    job = run_import(session, as_alice, csv_bytes(rows))
    assert job["status"] == "queued"
    (content,) = session.execute(text("SELECT content FROM import_jobs")).scalars()
    assert is_encrypted(content)
    assert session.execute(select(ImportJob.content).where(ImportJob.id == job["id"])).scalar_one() \
        == csv_bytes(rows)
    factory = make_session_factory(session.get_bind())
    assert imports.run_queued_jobs(factory) == 1
    with factory() as check:
        assert_no_plaintext(check, secrets=("secret.example", "+86137"))
        # ... and the imported customers are found by phone and email, and detected as duplicates.
        book = CustomerBook(check, as_alice)
        assert [c["name"] for c in book.list({"phone": "+8613700000007"})["items"]] == ["Imported 7"]
        assert [c["name"] for c in book.list({"email": "p9@secret.example"})["items"]] == ["Imported 9"]
    again = run_import(session, as_alice, csv_bytes([["", "Another", "+8613700000005", "", "", "", "", ""]]),
                       dry_run=False)
    assert again["report"]["skipped"] == 1 and again["report"]["created"] == 0


# --- the migration of existing data -----------------------------------------------

PLAIN_CONTACT = {"phones": [PHONE], "emails": [EMAIL], "address": {"street": STREET}}


def seed_plain_rows(url):
    """A database at revision 0004 holding plain-text personal data, as before encryption."""
    upgrade("customers.migrations", url, "0004")
    engine = create_engine(url)
    now = "2026-01-01 00:00:00+00:00"
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO customers (id, kind, name, company, contact, lifecycle_stage, lifecycle_changed_at,"
            " lifecycle_dates, custom_fields, search_text, dedupe_key, created_at, updated_at, version)"
            " VALUES ('c1', 'person', 'Wang Fang', '{}', :contact, 'lead', :now, '{}', '{}', 'wang fang',"
            " 'wangfang|', :now, :now, 1)"), {"contact": json.dumps(PLAIN_CONTACT), "now": now})
        connection.execute(text(
            "INSERT INTO contacts (id, customer_id, name, phones, emails, is_primary, created_at, updated_at,"
            " version) VALUES ('k1', 'c1', 'Li Na', :phones, :emails, false, :now, :now, 1)"),
            {"phones": json.dumps([CONTACT_PHONE]), "emails": json.dumps([CONTACT_EMAIL]), "now": now})
        connection.execute(text("INSERT INTO customer_identifiers VALUES ('c1', 'phone', :p), ('c1', 'email', :e)"),
                           {"p": PHONE, "e": EMAIL})
        connection.execute(text("INSERT INTO customer_tags VALUES ('c1', 'vip')"))
        connection.execute(text(
            "INSERT INTO customer_history (customer_id, action, changes, occurred_at)"
            " VALUES ('c1', 'created', :changes, :now)"),
            {"changes": json.dumps({"contact": {"old": None, "new": PLAIN_CONTACT}}), "now": now})
        connection.execute(text(
            "INSERT INTO import_jobs (id, status, filename, file_format, content, mapping, dry_run, on_duplicate,"
            " owner_teams, done_rows, report, created_at) VALUES ('j1', 'queued', 'f.csv', 'csv', :content, '{}',"
            " false, 'skip', '{}', 0, :report, :now)"),
            {"content": b"Name,Phone\nWang,+8613800138000\n\x00\xff", "now": now,
             "report": json.dumps({"rejected": [{"reason": f"{EMAIL} is taken"}]})})
        connection.execute(text(
            "INSERT INTO crm_outbox (event_id, event_type, payload, created_at, attempts)"
            " VALUES ('e1', 'customer.created', :payload, :now, 0)"),
            {"payload": json.dumps({"data": {"contact": PLAIN_CONTACT}}), "now": now})
    engine.dispose()


def check_migration(url):
    seed_plain_rows(url)
    upgrade("customers.migrations", url)
    engine = make_engine(url)
    Session = make_session_factory(engine)
    with Session() as session:
        assert_no_plaintext(session)
        # Nothing was lost on the way (SQLite copies tables to change a column type).
        for table, expected in (("contacts", 1), ("customer_identifiers", 2), ("customer_tags", 1),
                                ("customer_history", 1)):
            assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar() == expected, table
        assert all(is_encrypted(v) for v in session.execute(text("SELECT contact FROM customers")).scalars())
        customer = session.get(Customer, "c1")
        assert customer.contact == PLAIN_CONTACT
        assert session.execute(select(Contact.phones)).scalar_one() == [CONTACT_PHONE]
        assert session.execute(select(CustomerHistory.changes)).scalar_one()["contact"]["new"] == PLAIN_CONTACT
        job = session.get(ImportJob, "j1")
        assert job.content == b"Name,Phone\nWang,+8613800138000\n\x00\xff"
        assert job.report == {"rejected": [{"reason": f"{EMAIL} is taken"}]}
        book = CustomerBook(session, RequestContext.system())
        assert [c["id"] for c in book.list({"phone": PHONE})["items"]] == ["c1"]
        assert [c["id"] for c in book.list({"email": EMAIL})["items"]] == ["c1"]
        # The model's column types are what the migration made.
        columns = {c["name"]: c for c in inspect(session.connection()).get_columns("customers")}
        assert columns["contact"]["nullable"] is False
    engine.dispose()
    # The migrated schema is the models' (column types Text, no default left on contact).
    assert model_drift(schema_drift("customers.migrations", Base.metadata, url)) == []


def test_migration_encrypts_existing_rows_sqlite(tmp_path):
    check_migration(f"sqlite:///{tmp_path / 'customers.db'}")


def test_migration_encrypts_existing_rows_postgres():
    with postgres_database("crm_test_customers_pii") as url:
        check_migration(url)


def test_reencryption_moves_the_customers_data_to_a_new_key(session, as_alice, monkeypatch):
    from crm_common.crypto import count_stale_values, key_id, reencrypt_columns, reset_keyring
    from crm_common.db import kernel_metadata
    from crm_common.testing import TEST_DATA_KEYS

    book = CustomerBook(session, as_alice)
    created = create_wang(book, kind="company")
    Contacts(session, as_alice).create(created["id"], {"name": "Li Na", "phones": [CONTACT_PHONE]})
    session.commit()
    monkeypatch.setenv("CRM_DATA_KEYS", "new1:" + "bmV3LWRhdGEta2V5LTAxMjM0NTY3ODlhYmNkZWZnaGk=," + TEST_DATA_KEYS)
    reset_keyring()
    factory = make_session_factory(session.get_bind())
    metadata = [Base.metadata, kernel_metadata]
    stale = count_stale_values(factory, metadata)
    assert stale["customers.contact"] == 1 and stale["contacts.phones"] == 1 and stale["crm_outbox.payload"] > 0

    changed = reencrypt_columns(factory, metadata, batch_size=2)

    assert changed["customers.contact"] == 1 and changed["customer_history.changes"] >= 2
    assert set(count_stale_values(factory, metadata).values()) == {0}
    assert {key_id(v) for v in session.execute(text("SELECT contact FROM customers")).scalars()} == {"new1"}
    session.expire_all()
    assert session.get(Customer, created["id"]).contact["id_number"] == ID_NUMBER
    # The blind index does not depend on the data keys: lookup still finds the customer.
    assert [c["id"] for c in book.list({"phone": PHONE})["items"]] == [created["id"]]
