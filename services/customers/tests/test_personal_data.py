"""Personal data rights in the customers service: the export and the erasure."""
import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from crm_common.outbox import outbox_table
from crm_common.types import utcnow

from customers.activity import Contacts, Followups
from customers.domain import CustomerBook
from customers.models import CustomerHistory, CustomerIdentifier, Contact, Followup
from customers.personal_data import erase_customer, erased_name, forget_published_events, personal_data

NAME, PHONE, EMAIL = "Wang Xiaoming", "+8613800138000", "xiaoming@people.example"


def events(session):
    rows = session.execute(select(outbox_table.c.payload).order_by(outbox_table.c.id)).scalars()
    return [json.loads(row) for row in rows]


def publish_all(session):
    session.execute(update(outbox_table).where(outbox_table.c.published_at.is_(None)).values(published_at=utcnow()))


@pytest.fixture
def customer(session, as_alice):
    created = CustomerBook(session, as_alice).create({
        "kind": "person", "name": NAME, "notes": "Met Xiaoming at the fair",
        "company": {"name": "Xiaoming Trading", "industry": "Retail", "size": "1-9", "website": "https://x.example"},
        "contact": {"phones": [PHONE], "emails": [EMAIL],
                    "address": {"country": "CN", "city": "Shanghai", "street": "1 Nanjing Rd"}},
        "tags": ["vip"], "external_id": "legacy-42", "region": "east",
    })
    Followups(session, as_alice).log(created["id"], {
        "type": "call", "occurred_at": (utcnow() - timedelta(hours=1)).isoformat(),
        "summary": "Xiaoming asked about prices", "outcome": "Call Xiaoming back",
        "next_followup_at": (utcnow() + timedelta(days=1)).isoformat()})
    CustomerBook(session, as_alice).update(created["id"], {"notes": "Xiaoming prefers email"})
    session.flush()
    return created


@pytest.fixture
def company_customer(session, as_alice):
    created = CustomerBook(session, as_alice).create({"kind": "company", "name": "Acme Ltd"})
    Contacts(session, as_alice).create(created["id"], {"name": "Li Lei", "phones": ["+8613900139000"],
                                                      "emails": ["li.lei@acme.example"]})
    return created


def text_of(value):
    return json.dumps(value, ensure_ascii=False, default=str)


def test_export_has_the_record_followups_history_and_contacts(session, as_admin, customer, company_customer):
    data = personal_data(session, as_admin, customer["id"])
    assert data["customer"]["name"] == NAME
    assert data["customer"]["contact"]["phones"] == [PHONE]
    assert data["customer"]["tags"] == ["vip"]
    assert [f["summary"] for f in data["followups"]] == ["Xiaoming asked about prices"]
    assert {h["action"] for h in data["history"]} >= {"created", "updated", "followup_logged"}
    assert data["merged_customers"] == []
    contacts = personal_data(session, as_admin, company_customer["id"])["contacts"]
    assert [c["name"] for c in contacts] == ["Li Lei"]


def test_export_and_erase_are_for_admins_only(session, as_alice, as_east_manager, customer):
    for context in (as_alice, as_east_manager):
        with pytest.raises(Forbidden):
            personal_data(session, context, customer["id"])
        with pytest.raises(Forbidden):
            erase_customer(session, context, customer["id"], "asked by the customer")


def test_unknown_customer_is_not_found(session, as_admin):
    with pytest.raises(NotFound):
        personal_data(session, as_admin, "00000000-0000-4000-8000-000000000999")
    with pytest.raises(NotFound):
        erase_customer(session, as_admin, "00000000-0000-4000-8000-000000000999", "asked")


@pytest.mark.parametrize("reason", [None, "", "   ", "x" * 501, 42])
def test_erase_needs_a_reason(session, as_admin, customer, reason):
    with pytest.raises(ValidationFailed) as refused:
        erase_customer(session, as_admin, customer["id"], reason)
    assert "reason" in refused.value.errors
    assert personal_data(session, as_admin, customer["id"])["customer"]["name"] == NAME


def test_erase_scrubs_every_personal_field(session, as_admin, as_alice, customer):
    publish_all(session)
    result = erase_customer(session, as_admin, customer["id"], "GDPR request #7")
    assert result["customer_id"] == customer["id"] and result["erased_at"]

    after = personal_data(session, as_admin, customer["id"])
    record = after["customer"]
    assert record["name"] == erased_name(customer["id"]) == f"Erased customer {customer['id'][:8]}"
    assert record["contact"] == {}
    assert record["company"] == {"industry": "Retail", "size": "1-9"}
    assert record["notes"] is None and record["custom_fields"] == {}
    assert record["erased_at"] is not None
    # Kept: a legacy key and the classification.
    assert record["external_id"] == "legacy-42" and record["tags"] == ["vip"] and record["region"] == "east"
    assert [f["summary"] for f in after["followups"]] == ["[erased]"]
    assert [f["outcome"] for f in after["followups"]] == ["[erased]"]
    # History keeps what changed, who and when; not the values.
    assert after["history"][-1]["action"] == "erased"
    assert all(entry["actor_id"] for entry in after["history"])
    everything = text_of(after)
    for secret in (NAME, "Xiaoming", PHONE, EMAIL, "Nanjing", "x.example"):
        assert secret not in everything

    assert session.execute(select(CustomerIdentifier)).scalars().all() == []
    customer_row = CustomerBook(session, as_admin).get(customer["id"])
    assert "xiaoming" not in customer_row.search_text
    assert "xiaoming" not in customer_row.dedupe_key
    book = CustomerBook(session, as_alice)
    assert book.list({"q": "Xiaoming"})["items"] == []
    assert book.list({"phone": PHONE})["items"] == []
    assert book.list({"email": EMAIL})["items"] == []


def test_erase_publishes_the_new_snapshot_and_customer_erased_and_drops_old_events(session, as_admin, customer):
    publish_all(session)
    assert any(NAME in text_of(e) for e in events(session))
    erase_customer(session, as_admin, customer["id"], "GDPR request #7")
    published = events(session)
    # Only what the erasure wrote is left: no old snapshot with the name, phone or email.
    for secret in (NAME, PHONE, EMAIL):
        assert secret not in text_of(published)
    types = [e["type"] for e in published]
    assert "customer.updated" in types and "customer.erased" in types
    erased = next(e for e in published if e["type"] == "customer.erased")
    assert erased["data"]["customer_id"] == customer["id"]
    snapshot = next(e for e in published if e["type"] == "customer.updated")["data"]
    assert snapshot["name"] == erased_name(customer["id"]) and snapshot["erased_at"]
    audit = [e["data"] for e in published if e["type"] == "audit.recorded" and e["data"]["action"] == "customer.erased"]
    assert len(audit) == 1
    assert audit[0]["detail"]["reason"] == "GDPR request #7"
    assert audit[0]["entity_id"] == customer["id"] and audit[0]["actor_role"] == "admin"


def test_pending_events_are_kept_and_other_customers_events_too(session, as_admin, as_alice, customer):
    other = CustomerBook(session, as_alice).create({"kind": "person", "name": "Han Meimei",
                                                    "contact": {"emails": ["meimei@people.example"]}})
    publish_all(session)
    CustomerBook(session, as_alice).update(customer["id"], {"tier": "A"})  # pending, not yet published
    assert forget_published_events(session, {customer["id"]}, batch_size=2) >= 3
    remaining = text_of(events(session))
    assert other["id"] in remaining
    assert '"tier": "A"' in remaining


def test_contacts_of_a_company_are_deleted(session, as_admin, company_customer):
    erase_customer(session, as_admin, company_customer["id"], "asked")
    assert session.execute(select(Contact)).scalars().all() == []
    row = CustomerBook(session, as_admin).get(company_customer["id"])
    assert "li lei" not in row.search_text


def test_erasing_twice_is_a_conflict(session, as_admin, customer):
    erase_customer(session, as_admin, customer["id"], "asked")
    with pytest.raises(Conflict) as refused:
        erase_customer(session, as_admin, customer["id"], "asked again")
    assert "already erased" in refused.value.detail


def test_a_deleted_customer_can_be_erased_and_stays_deleted(session, as_admin, as_alice, customer):
    CustomerBook(session, as_alice).delete(customer["id"])
    erase_customer(session, as_admin, customer["id"], "asked")
    record = personal_data(session, as_admin, customer["id"])["customer"]
    assert record["deleted_at"] is not None and record["name"].startswith("Erased customer")


def test_merged_customers_are_erased_with_their_target(session, as_admin, as_alice, customer):
    source = CustomerBook(session, as_alice).create({
        "kind": "person", "name": "Xiaoming W.", "contact": {"phones": ["+8613700137000"]}},
        allow_duplicate=True)
    CustomerBook(session, as_alice).merge(customer["id"], {"source_id": source["id"]})
    exported = personal_data(session, as_admin, customer["id"])
    assert [m["customer"]["name"] for m in exported["merged_customers"]] == ["Xiaoming W."]
    with pytest.raises(Conflict) as refused:
        erase_customer(session, as_admin, source["id"], "asked")
    assert customer["id"] in refused.value.detail

    erase_customer(session, as_admin, customer["id"], "asked")
    merged = personal_data(session, as_admin, customer["id"])["merged_customers"][0]
    assert merged["customer"]["name"] == erased_name(source["id"])
    assert merged["customer"]["contact"] == {} and merged["customer"]["erased_at"]
    assert "Xiaoming" not in text_of(merged)
    erased_ids = [e["data"]["customer_id"] for e in events(session) if e["type"] == "customer.erased"]
    assert sorted(erased_ids) == sorted([customer["id"], source["id"]])


def test_history_rows_keep_field_names_and_who(session, as_admin, customer):
    erase_customer(session, as_admin, customer["id"], "asked")
    rows = session.execute(select(CustomerHistory).where(CustomerHistory.action == "updated")).scalars().all()
    assert rows and all(row.changes["notes"] == {"old": "[erased]", "new": "[erased]"} for row in rows)
    assert all(row.actor_id for row in rows)
    followup = session.execute(select(Followup)).scalar_one()
    assert followup.next_followup_at is not None  # the plan stays; only the text goes
