"""Record-level rules end to end: a user reaches another owner's records by no door.

Two sales users of one team, ``rep`` (the owner) and ``colleague``; a manager
of another team; a support user. The rep owns a customer, an opportunity, a
quote, an order with a payment, a contract with a file and a task. The
colleague and the other team's manager then try every way in with the rep's
ids: by id, by a change or a state transition, by list filters naming the
rep, by the customers export, by the reports, by a merge, and by new records
for the rep's customer. Each attempt is one test: the answer is the one for a
record that does not exist, and the rep's records are exactly as they were.

The services enforce these rules themselves (crm_common.permissions.visibility
in each one); the unit tests of customers, sales and notifications show each
service refusing on its own, without the gateway.
"""
import csv
import io
import secrets
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from api_helpers import assert_problem, new_user, once_sales_knows, unique
from conftest import wait_until

SETTLE_SECONDS = 30
MISSING = "00000000-0000-4000-8000-000000000000"  # an id no record has


def created(response):
    assert response.status_code == 201, response.text
    return response.json()


class World:
    """The users and the rep's records (ids), shared by every test of the module."""


@pytest.fixture(scope="module")
def world(system, admin):
    w = World()
    team = f"records-{secrets.token_hex(3)}"
    w.rep = new_user(system, admin, "sales", team)
    w.actors = {
        "colleague": new_user(system, admin, "sales", team),
        "other-manager": new_user(system, admin, "manager", f"{team}-other"),
        "support": new_user(system, admin, "support", team),
    }
    w.admin = admin
    rep = w.rep

    product = created(admin.post("/products", json={
        "sku": f"REC-{secrets.token_hex(4)}", "name": "Guarded widget", "unit": "piece", "list_price": "10.00",
        "currency": "CNY", "tax_rate": "13"}))
    w.product_id = product["id"]
    # Each actor's own customer, made first: once sales knows the rep's customer it knows these too.
    # (Support may create none: it borrows the colleague's, and is refused anyway.)
    w.own = {actor: created(api.post("/customers", json={"kind": "company", "name": unique(f"{actor} Own Ltd")}))
             for actor, api in w.actors.items() if actor != "support"}
    w.own["support"] = w.own["colleague"]
    w.customer = created(rep.post("/customers", json={"kind": "company", "name": unique("Rep Only Ltd")}))
    cid = w.customer["id"]
    # With a next step, so that it is in the rep's day plan (GET /followups), a list the actors filter by owner.
    created(rep.post(f"/customers/{cid}/followups", json={
        "type": "call", "summary": "Went through the offer",
        "next_followup_at": (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()}))
    w.opportunity = created(once_sales_knows(lambda: rep.post("/opportunities", json={
        "customer_id": cid, "title": "Rep's deal", "amount": "5000.00", "currency": "CNY",
        "expected_close_date": (datetime.now(timezone.utc).date() + timedelta(days=20)).isoformat()})))
    lines = [{"product_id": w.product_id, "quantity": 2}]
    w.quote = created(rep.post("/quotes", json={"customer_id": cid, "valid_until": "2999-12-31", "lines": lines}))
    order = created(rep.post("/orders", json={"customer_id": cid, "lines": lines}))
    confirmed = rep.post(f"/orders/{order['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    w.payment = created(rep.post(f"/orders/{order['id']}/payments", json={"amount": "5.00", "method": "card"}))
    w.order = rep.get(f"/orders/{order['id']}").json()
    today = datetime.now(timezone.utc).date()
    w.contract = created(rep.post("/contracts", json={
        "customer_id": cid, "title": "Rep's service contract", "value": "1000", "currency": "CNY",
        "start_date": today.isoformat(), "end_date": (today + timedelta(days=200)).isoformat()}))
    w.attachment = created(rep.post(f"/contracts/{w.contract['id']}/attachments",
                                    files={"file": ("terms.txt", b"the rep's terms", "text/plain")}))
    w.task = created(rep.post("/tasks", json={"title": "Call the rep's customer", "customer_id": cid}))
    w.ids = {"customer": cid, "opportunity": w.opportunity["id"],
             "quote": w.quote["id"], "order": w.order["id"], "payment": w.payment["id"],
             "contract": w.contract["id"], "attachment": w.attachment["id"], "task": w.task["id"],
             "rep": rep.user["id"], "pipeline": w.opportunity["pipeline_id"]}
    w.paths = {"customer": f"/customers/{cid}", "opportunity": f"/opportunities/{w.ids['opportunity']}",
               "quote": f"/quotes/{w.ids['quote']}", "order": f"/orders/{w.ids['order']}",
               "contract": f"/contracts/{w.ids['contract']}", "task": f"/tasks/{w.ids['task']}"}
    w.before = {kind: state(rep, path) for kind, path in w.paths.items()}
    return w


def state(api, path):
    """What must not change: the version, the status and the whole record."""
    response = api.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def unchanged(world):
    """The owner still sees each record exactly as before (same version, same fields)."""
    for kind, path in world.paths.items():
        now = state(world.rep, path)
        assert now == world.before[kind], f"the rep's {kind} changed"
    for customer in world.own.values():
        own = state(world.admin, f"/customers/{customer['id']}")
        assert own["version"] == customer["version"] and own["deleted_at"] is None


# --- by id: reads, changes and state transitions ------------------------------------------

READS = [
    ("customer", "/customers/{customer}"),
    ("customer history", "/customers/{customer}/history"),
    ("customer duplicates", "/customers/{customer}/duplicates"),
    ("customer contacts", "/customers/{customer}/contacts"),
    ("customer followups", "/customers/{customer}/followups"),
    ("customer orders", "/customers/{customer}/orders"),
    ("opportunity", "/opportunities/{opportunity}"),
    ("opportunity history", "/opportunities/{opportunity}/history"),
    ("quote", "/quotes/{quote}"),
    ("order", "/orders/{order}"),
    ("order payments", "/orders/{order}/payments"),
    ("contract", "/contracts/{contract}"),
    ("contract history", "/contracts/{contract}/history"),
    ("contract attachments", "/contracts/{contract}/attachments"),
    ("contract file", "/contracts/{contract}/attachments/{attachment}/content"),
    ("task", "/tasks/{task}"),
]

# (name, method, path, body): every one a change the rep's records must not see.
WRITES = [
    ("PATCH customer", "PATCH", "/customers/{customer}", {"industry": "Mining"}),
    ("DELETE customer", "DELETE", "/customers/{customer}", None),
    ("restore customer", "POST", "/customers/{customer}/restore", None),
    ("add contact", "POST", "/customers/{customer}/contacts", {"name": "Intruder"}),
    ("log followup", "POST", "/customers/{customer}/followups", {"type": "call", "summary": "Not mine"}),
    ("merge rep's customer into own", "POST", "/customers/{own_customer}/merge", {"source_id": "{customer}"}),
    ("merge own customer into rep's", "POST", "/customers/{customer}/merge", {"source_id": "{own_customer}"}),
    ("PATCH opportunity", "PATCH", "/opportunities/{opportunity}", {"title": "Taken over"}),
    ("move opportunity stage", "POST", "/opportunities/{opportunity}/stage", {"stage": "needs_analysis"}),
    ("PATCH quote", "PATCH", "/quotes/{quote}", {"notes": "Taken over"}),
    ("send quote", "POST", "/quotes/{quote}/send", None),
    ("accept quote", "POST", "/quotes/{quote}/accept", None),
    ("reject quote", "POST", "/quotes/{quote}/reject", {"reason": "Not mine"}),
    ("confirm order", "POST", "/orders/{order}/confirm", None),
    ("add payment", "POST", "/orders/{order}/payments", {"amount": "1.00", "method": "card"}),
    ("fulfil order", "POST", "/orders/{order}/fulfil", None),
    ("cancel order", "POST", "/orders/{order}/cancel", {"reason": "Not mine"}),
    ("PATCH contract", "PATCH", "/contracts/{contract}", {"title": "Taken over"}),
    ("submit contract", "POST", "/contracts/{contract}/submit", None),
    ("approve contract", "POST", "/contracts/{contract}/approve", None),
    ("sign contract", "POST", "/contracts/{contract}/sign", {}),
    ("terminate contract", "POST", "/contracts/{contract}/terminate", {"reason": "Not mine"}),
    ("delete contract file", "DELETE", "/contracts/{contract}/attachments/{attachment}", None),
    ("PATCH task", "PATCH", "/tasks/{task}", {"title": "Taken over"}),
    ("complete task", "POST", "/tasks/{task}/complete", None),
    ("cancel task", "POST", "/tasks/{task}/cancel", None),
]

# Roles the permission matrix refuses before any record is looked at (403); the rest is 404.
MATRIX_REFUSED = {
    "support": lambda name: "task" not in name,
    "other-manager": lambda name: False,
    "colleague": lambda name: name == "approve contract",
}


def ids_for(world, actor):
    return {**world.ids, "own_customer": world.own[actor]["id"], "product": world.product_id}


def fill(template, ids):
    if isinstance(template, dict):
        return {key: fill(value, ids) for key, value in template.items()}
    return template.format(**ids) if isinstance(template, str) else template


def send(api, method, path, body):
    return getattr(api, method.lower())(path, **({} if body is None else {"json": body}))


@pytest.mark.parametrize("actor", ["colleague", "other-manager"])
@pytest.mark.parametrize("name,path", READS, ids=[name for name, _ in READS])
def test_reading_another_owners_record_by_id_is_404(world, actor, name, path):
    # The owner reads it: the 404 is the record hidden from the actor, not a route that fails for everyone.
    as_owner = world.rep.get(fill(path, world.ids))
    assert as_owner.status_code == 200, as_owner.text
    assert_problem(world.actors[actor].get(fill(path, world.ids)), 404)


@pytest.mark.parametrize("actor", ["colleague", "other-manager", "support"])
@pytest.mark.parametrize("name,method,path,body", WRITES, ids=[case[0] for case in WRITES])
def test_changing_another_owners_record_is_refused_and_changes_nothing(world, actor, name, method, path, body):
    ids = ids_for(world, actor)
    response = send(world.actors[actor], method, fill(path, ids), fill(body, ids))
    if MATRIX_REFUSED[actor](name):
        assert_problem(response, 403)
    elif name == "merge rep's customer into own":
        # The rep's customer is named in the body: the answer is the one for a customer that does not exist.
        missing = send(world.actors[actor], method, fill(path, ids), {"source_id": MISSING})
        assert_problem(missing, 422, "source_id")
        assert_problem(response, 422, "source_id")
    else:
        assert_problem(response, 404)
    unchanged(world)


# --- new records for the rep's customer -----------------------------------------------------

NEW_FOR_CUSTOMER = [
    ("opportunity", "/opportunities", {"customer_id": "{customer}", "title": "Poached", "amount": "1.00",
                                       "currency": "CNY"}),
    ("quote", "/quotes", {"customer_id": "{customer}", "lines": [{"product_id": "{product}", "quantity": 1}]}),
    ("order", "/orders", {"customer_id": "{customer}", "lines": [{"product_id": "{product}", "quantity": 1}]}),
    ("contract", "/contracts", {"customer_id": "{customer}", "title": "Poached", "value": "1", "currency": "CNY",
                                "start_date": "2030-01-01", "end_date": "2030-12-31"}),
    ("task", "/tasks", {"title": "Poached", "customer_id": "{customer}"}),
    ("task for the rep's opportunity", "/tasks", {"title": "Poached", "opportunity_id": "{opportunity}"}),
    ("task for the rep's contract", "/tasks", {"title": "Poached", "contract_id": "{contract}"}),
    ("contract for the rep's order", "/contracts", {
        "customer_id": "{own_customer}", "order_id": "{order}", "title": "Poached", "value": "1",
        "currency": "CNY", "start_date": "2030-01-01", "end_date": "2030-12-31"}),
]


@pytest.mark.parametrize("actor", ["colleague", "other-manager"])
@pytest.mark.parametrize("name,path,body", NEW_FOR_CUSTOMER, ids=[case[0] for case in NEW_FOR_CUSTOMER])
def test_a_record_naming_another_owners_record_is_refused_like_a_missing_one(world, actor, name, path, body):
    """The rep's customer (opportunity, contract, order) named in a new record is answered exactly as an id
    that does not exist: 422 naming the field, and nothing is created."""
    api = world.actors[actor]
    filled = fill(body, ids_for(world, actor))
    field = next(key for key, value in body.items() if value in ("{customer}", "{opportunity}", "{contract}",
                                                                   "{order}"))
    like_missing = assert_problem(api.post(path, json={**filled, field: MISSING}), 422, field)
    refused = assert_problem(api.post(path, json=filled), 422, field)
    assert refused["errors"][field] == like_missing["errors"][field]
    unchanged(world)


# --- lists, search and exports --------------------------------------------------------------

LISTS = [
    ("customers by owner", "/customers", {"owner_id": "{rep}"}, "customer"),
    ("customers by name", "/customers", {"q": "Rep Only"}, "customer"),
    ("opportunities by owner", "/opportunities", {"owner_id": "{rep}"}, "opportunity"),
    ("opportunities by customer", "/opportunities", {"customer_id": "{customer}"}, "opportunity"),
    ("quotes by owner", "/quotes", {"owner_id": "{rep}"}, "quote"),
    ("quotes by customer", "/quotes", {"customer_id": "{customer}"}, "quote"),
    ("orders by owner", "/orders", {"owner_id": "{rep}"}, "order"),
    ("orders by customer", "/orders", {"customer_id": "{customer}"}, "order"),
    ("contracts by owner", "/contracts", {"owner_id": "{rep}"}, "contract"),
    ("contracts by customer", "/contracts", {"customer_id": "{customer}"}, "contract"),
    ("tasks by assignee", "/tasks", {"assignee": "{rep}"}, "task"),
    ("tasks by customer", "/tasks", {"customer_id": "{customer}"}, "task"),
    ("followups by owner", "/followups", {"owner_id": "{rep}", "due_before": "2999-01-01T00:00:00Z"}, "customer"),
]


@pytest.mark.parametrize("actor", ["colleague", "other-manager"])
@pytest.mark.parametrize("name,path,params,kind", LISTS, ids=[case[0] for case in LISTS])
def test_list_filters_naming_the_owner_show_none_of_their_records(world, actor, name, path, params, kind):
    params = fill(params, world.ids)
    as_owner = world.rep.get(path, params=params)
    assert as_owner.status_code == 200, as_owner.text
    # The same filter finds the record for its owner: it is hidden from the actor, not from everyone.
    assert world.ids[kind] in as_owner.text, as_owner.text
    response = world.actors[actor].get(path, params=params)
    assert response.status_code == 200, response.text
    assert world.ids["rep"] not in response.text and world.ids[kind] not in response.text, response.text


@pytest.mark.parametrize("actor", ["colleague", "other-manager"])
def test_the_pipeline_board_shows_none_of_the_owners_opportunities(world, actor):
    own_board = world.rep.get(f"/pipelines/{world.ids['pipeline']}/board")
    assert own_board.status_code == 200, own_board.text
    assert world.ids["opportunity"] in own_board.text  # the owner's board has it
    board = world.actors[actor].get(f"/pipelines/{world.ids['pipeline']}/board")
    assert board.status_code == 200, board.text
    assert world.ids["opportunity"] not in board.text


@pytest.mark.parametrize("actor", ["colleague", "other-manager"])
@pytest.mark.parametrize("params", [{}, {"owner_id": "{rep}"}], ids=["everything", "by owner"])
def test_the_customers_export_holds_none_of_the_owners_customers(world, actor, params):
    def exported(api):
        """(the ids of the rows, the whole file as text)"""
        response = api.get("/exports/customers", params=fill(params, world.ids))
        assert response.status_code == 200, response.text
        text = response.content.decode("utf-8-sig")
        return [row["id"] for row in csv.DictReader(io.StringIO(text))], text

    assert world.ids["customer"] in exported(world.rep)[0]  # the owner's export has it
    ids, text = exported(world.actors[actor])
    assert world.ids["customer"] not in ids
    assert world.customer["name"] not in text


# --- reports --------------------------------------------------------------------------------

REPORTS = [
    "/reports/customers/summary", "/reports/sales/by-period", "/reports/sales/by-product",
    "/reports/sales/top-customers", "/reports/sales/funnel", "/reports/sales/forecast", "/reports/activities",
    "/reports/contracts",
]
VOLATILE = ("generated_at", "as_of", "request_id")


def figures(api, path, owner_id, file_format=None):
    params = {"owner_id": owner_id, **({"format": file_format} if file_format else {})}
    response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    if file_format:
        return response.content
    return {key: value for key, value in response.json().items() if key not in VOLATILE}


@pytest.fixture(scope="module")
def reported(world):
    """Every report shows the rep's figures to the admin (the facts arrive by events)."""
    nobody = str(uuid.uuid4())
    for path in REPORTS:
        wait_until(lambda: figures(world.admin, path, world.ids["rep"]) != figures(world.admin, path, nobody),
                   SETTLE_SECONDS, interval=0.3, message=f"{path} to show the rep's figures")
    return nobody


@pytest.mark.parametrize("actor", ["colleague", "other-manager"])
@pytest.mark.parametrize("file_format", [None, "csv"], ids=["json", "csv"])
@pytest.mark.parametrize("path", REPORTS)
def test_reports_filtered_by_the_owner_show_none_of_their_figures(world, reported, actor, path, file_format):
    api = world.actors[actor]
    assert figures(api, path, world.ids["rep"], file_format) == figures(api, path, reported, file_format)


@pytest.mark.parametrize("actor", ["colleague", "other-manager"])
def test_sales_by_owner_names_no_other_owner(world, reported, actor):
    for params in ({}, {"team": world.rep.user["team_id"]}):
        own = world.rep.get("/reports/sales/by-owner", params=params)
        assert own.status_code == 200, own.text
        assert world.ids["rep"] in own.text  # the owner's own report has their row
        response = world.actors[actor].get("/reports/sales/by-owner", params=params)
        assert response.status_code == 200, response.text
        assert world.ids["rep"] not in response.text
