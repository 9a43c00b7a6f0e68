"""A person's data rights end to end: export everything held about a customer across the
services, then erase it; orders and amounts stay, no trace of the person is left."""
import json
import re
import secrets
from datetime import date, datetime, timedelta, timezone

import pytest

from api_helpers import assert_problem, once_sales_knows as once_sales, phone
from conftest import wait_until

ERASED = "[erased]"


def iso(moment):
    return moment.isoformat()


def created(response):
    assert response.status_code in (200, 201), response.text
    return response.json()


def once_sales_knows(post):
    return created(once_sales(post))


@pytest.fixture(scope="module")
def person(admin):
    """A customer with contact details, a contact, follow-ups, an opportunity, a quote, an order
    with a payment, a contract and a task, all naming the person."""
    token = secrets.token_hex(3)
    name = f"Xiaoming Wang {token}"
    contact_name = f"Li Lei {token}"
    raw_phone = phone()
    email = f"xiaoming.{token}@people.example"
    region = f"rights-{token}"
    customer = created(admin.post("/customers", json={
        "kind": "company", "name": name, "region": region, "notes": f"{name} prefers mornings",
        "company": {"name": f"{name} Trading", "industry": "Retail", "website": "https://xiaoming.example"},
        "contact": {"phones": [raw_phone], "emails": [email],
                    "address": {"country": "CN", "city": "Shanghai", "street": f"{token} Nanjing Road"}}}))
    cid = customer["id"]
    created(admin.post(f"/customers/{cid}/contacts", json={"name": contact_name, "emails": [f"li.{token}@x.example"]}))
    created(admin.post(f"/customers/{cid}/followups", json={
        "type": "call", "occurred_at": iso(datetime.now(timezone.utc) - timedelta(hours=1)),
        "summary": f"{name} asked about prices", "outcome": f"Send {name} an offer",
        "next_followup_at": iso(datetime.now(timezone.utc) + timedelta(days=2))}))
    product = created(admin.post("/products", json={
        "sku": f"RIGHTS-{token}", "name": "Industrial widget", "unit": "piece", "list_price": "100.00",
        "currency": "CNY", "tax_rate": "13"}))
    opportunity = once_sales_knows(lambda: admin.post("/opportunities", json={
        "customer_id": cid, "title": f"Widgets for {name}", "amount": "1200.00", "currency": "CNY"}))
    quote = created(admin.post("/quotes", json={
        "customer_id": cid, "valid_until": "2999-12-31", "notes": f"Special price for {name}",
        "lines": [{"product_id": product["id"], "quantity": "2"}]}))
    created(admin.post(f"/quotes/{quote['id']}/send"))
    order = created(admin.post(f"/quotes/{quote['id']}/accept"))
    created(admin.post(f"/orders/{order['id']}/payments", json={"amount": "100.00", "method": "bank_transfer",
                                                                 "reference": "TT-RIGHTS"}))
    contract = created(admin.post("/contracts", json={
        "customer_id": cid, "title": f"Support for {name}", "value": "5000.00", "currency": "CNY",
        "start_date": date.today().isoformat(), "end_date": (date.today() + timedelta(days=365)).isoformat(),
        "renewal_terms": "Renews yearly"}))
    task = created(admin.post("/tasks", json={"title": f"Visit {name}", "description": f"Bring {name} a gift",
                                               "customer_id": cid}))
    return {"id": cid, "name": name, "contact_name": contact_name, "phone": re.sub(r"\D", "", raw_phone),
            "raw_phone": raw_phone, "email": email, "region": region, "opportunity": opportunity,
            "quote": quote, "order": order, "contract": contract, "task": task}


def export_of(admin, person):
    response = admin.get(f"/customers/{person['id']}/export-personal-data")
    assert response.status_code == 200, response.text
    return response.json()


def top_customer_row(admin, person):
    rows = admin.get("/reports/sales/top-customers", params={"region": person["region"]}).json()["rows"]
    return next((row for row in rows if row["customer_id"] == person["id"]), None)


def test_1_the_export_has_everything_about_the_person(admin, person):
    def complete():
        export = export_of(admin, person)
        # The follow-up's reminder task reaches notifications by event.
        return export if len(export["notifications"]["tasks"]) == 2 else None
    export = wait_until(complete, 20, interval=0.3, message="the follow-up task in the export")
    assert export["customer_id"] == person["id"] and export["generated_at"]
    customers = export["customers"]
    assert customers["customer"]["name"] == person["name"]
    assert customers["customer"]["contact"]["emails"] == [person["email"]]
    assert [c["name"] for c in customers["contacts"]] == [person["contact_name"]]
    assert [f["summary"] for f in customers["followups"]] == [f"{person['name']} asked about prices"]
    assert customers["history"]
    sales = export["sales"]
    assert [o["id"] for o in sales["opportunities"]] == [person["opportunity"]["id"]]
    assert [q["id"] for q in sales["quotes"]] == [person["quote"]["id"]]
    [order] = sales["orders"]
    assert order["id"] == person["order"]["id"] and len(order["lines"]) == 1
    assert [p["reference"] for p in order["payments"]] == ["TT-RIGHTS"]
    assert [c["id"] for c in sales["contracts"]] == [person["contract"]["id"]]
    titles = sorted(t["title"] for t in export["notifications"]["tasks"])
    assert titles == sorted([f"Follow up with {person['name']}", f"Visit {person['name']}"])


def test_2_only_admins_export_and_erase(make_user, person):
    for role in ("manager", "sales", "support", "viewer"):
        api = make_user(role)
        assert_problem(api.get(f"/customers/{person['id']}/export-personal-data"), 403)
        assert_problem(api.post(f"/customers/{person['id']}/erase", json={"reason": "asked", "confirm": True}), 403)


def test_3_unknown_ids_and_bad_input_change_nothing(admin, person):
    unknown = "00000000-0000-4000-8000-00000000e4a5"
    assert_problem(admin.get(f"/customers/{unknown}/export-personal-data"), 404)
    assert_problem(admin.post(f"/customers/{unknown}/erase", json={"reason": "asked", "confirm": True}), 404)
    url = f"/customers/{person['id']}/erase"
    assert_problem(admin.post(url, json={"confirm": True}), 422, "reason")
    assert_problem(admin.post(url, json={"reason": "asked"}), 422, "confirm")
    assert_problem(admin.post(url, json={"reason": "asked", "confirm": False}), 422, "confirm")
    assert admin.get(f"/customers/{person['id']}").json()["name"] == person["name"]


def test_4_erasure_anonymises_everywhere_and_keeps_the_accounts(admin, person):
    revenue = wait_until(lambda: top_customer_row(admin, person), 20, interval=0.3,
                         message="the order in the top customers report")
    assert revenue["name"] == person["name"]
    # Found by name, phone and email before the erasure: the searches at the end must find nothing.
    searches = ({"q": person["name"]}, {"phone": person["raw_phone"]}, {"email": person["email"]})
    for params in searches:
        assert [c["id"] for c in admin.get("/customers", params=params).json()["items"]] == [person["id"]], params

    erased = admin.post(f"/customers/{person['id']}/erase", json={"reason": "GDPR request E2E", "confirm": True})
    assert erased.status_code == 200, erased.text
    assert erased.json()["customer_id"] == person["id"] and erased.json()["erased_at"]
    again = assert_problem(admin.post(f"/customers/{person['id']}/erase",
                                      json={"reason": "again", "confirm": True}), 409)
    assert "already erased" in again["detail"]

    customer = admin.get(f"/customers/{person['id']}").json()
    assert customer["name"].startswith("Erased customer") and person["name"] not in customer["name"]
    assert customer["contact"] == {} and customer["notes"] is None and customer["erased_at"]
    assert admin.get(f"/customers/{person['id']}/contacts").json()["items"] == []
    followups = admin.get(f"/customers/{person['id']}/followups").json()["items"]
    assert [(f["summary"], f["outcome"]) for f in followups] == [(ERASED, ERASED)]

    # The order stays, with its lines, payment and amounts.
    order = admin.get(f"/orders/{person['order']['id']}").json()
    for field in ("total", "subtotal", "tax_total", "status", "lines"):
        assert order[field] == person["order"][field]
    assert order["paid_amount"] == "100.00"
    assert [p["amount"] for p in admin.get(f"/orders/{order['id']}/payments").json()["items"]] == ["100.00"]

    # The other services catch up by event: the export ends up without any trace of the person.
    secrets_of_person = (person["name"], person["contact_name"], person["email"], person["phone"],
                         person["name"].split()[0])

    def clean_export():
        export = export_of(admin, person)
        text = json.dumps(export, ensure_ascii=False)
        digits = re.sub(r"\D", "", text)
        left = [value for value in secrets_of_person if value in text or (value.isdigit() and value in digits)]
        return export if not left else None
    export = wait_until(clean_export, 30, interval=0.5, message="an export without the person's data")
    assert export["sales"]["orders"][0]["total"] == person["order"]["total"]
    assert [c["title"] for c in export["sales"]["contracts"]] == [ERASED]
    # Both tasks stay (the visit and the follow-up's reminder), without the person: an empty list would
    # pass the checks below too.
    tasks = export["notifications"]["tasks"]
    assert len(tasks) == 2, tasks
    assert all(t["description"] in (ERASED, None) for t in tasks)
    assert all(t["title"].startswith("Task about Erased customer") for t in tasks)

    # Reports keep the amounts under the anonymised name.
    row = wait_until(lambda: (lambda r: r if r and r["name"] != person["name"] else None)(
        top_customer_row(admin, person)), 20, interval=0.3, message="reporting to rename the customer")
    assert (row["revenue"], row["paid"], row["orders"]) == (revenue["revenue"], revenue["paid"], revenue["orders"])
    assert row["name"] == customer["name"]

    # Searching by the old name, phone or email finds nothing.
    for params in searches:
        assert admin.get("/customers", params=params).json()["items"] == [], params


def test_5_the_erasure_is_in_the_audit_trail(admin, person):
    def entries():
        answer = admin.get("/audit", params={"action": "customer.erased", "entity_id": person["id"]})
        assert answer.status_code == 200, answer.text
        return answer.json()["items"]
    [entry] = wait_until(entries, 20, interval=0.3, message="customer.erased in the audit trail")
    assert entry["detail"]["reason"] == "GDPR request E2E"
    exported = admin.get("/audit", params={"action": "customer.personal_data_exported", "entity_id": person["id"]})
    assert exported.json()["items"]
