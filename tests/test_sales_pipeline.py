"""Pipelines and opportunities end to end: a deal from first contact to won, over HTTP."""
import secrets
import time
import uuid

import pytest

from api_helpers import assert_problem, unique
from conftest import wait_until


@pytest.fixture
def team():
    """A team of its own per test: a manager's view then holds only this test's records."""
    return f"pipe-{secrets.token_hex(3)}"


def known_customer(api):
    """A new customer, once the sales service knows it (it learns from the customers' events)."""
    created = api.post("/customers", json={"kind": "company", "name": unique("Pipeline Works")})
    assert created.status_code == 201, created.text
    return created.json()["id"]


def create_opportunity(api, customer_id, **fields):
    """POST /opportunities, retried while the customer has not reached sales yet (422 on customer_id)."""
    body = {"customer_id": customer_id, "title": "Line 3 upgrade", "amount": "1200.00", "currency": "CNY", **fields}
    outcome = {}

    def accepted():
        response = api.post("/opportunities", json=body)
        if response.status_code == 422 and "customer_id" in response.json().get("errors", {}):
            return False
        outcome["response"] = response
        return True

    wait_until(accepted, 15, interval=0.2, message="sales to know the customer")
    return outcome["response"]


def move(api, opportunity_id, stage, **fields):
    return api.post(f"/opportunities/{opportunity_id}/stage", json={"stage": stage, **fields})


def test_a_deal_moves_through_the_pipeline_and_closes(system, make_user, team):
    rep = make_user("sales", team)
    manager = make_user("manager", team)
    stranger = make_user("sales", "elsewhere")
    started = time.monotonic()
    customer_id = known_customer(rep)

    created = create_opportunity(rep, customer_id, expected_close_date="2026-06-30", source="trade fair")
    assert created.status_code == 201, created.text
    deal = created.json()
    assert (deal["stage"], deal["probability"], deal["status"], deal["amount"]) == (
        "qualification", 10, "open", "1200.00")
    assert deal["owner_id"] == rep.user["id"] and deal["owner_team_id"] == team
    assert created.headers["Location"].endswith(deal["id"]) and created.headers["ETag"] == 'W/"1"'

    moved = move(rep, deal["id"], "needs_analysis", note="Met the plant manager")
    assert moved.status_code == 200, moved.text
    assert (moved.json()["stage"], moved.json()["probability"]) == ("needs_analysis", 25)
    assert moved.headers["ETag"] == 'W/"2"'

    history = rep.get(f"/opportunities/{deal['id']}/history").json()["items"]
    assert [(h["from_stage"], h["to_stage"]) for h in history] == [("qualification", "needs_analysis"),
                                                                   (None, "qualification")]
    assert history[0]["changed_by"] == rep.user["id"] and history[0]["note"] == "Met the plant manager"
    assert 0 <= history[0]["seconds_in_previous_stage"] <= time.monotonic() - started + 1

    # Losing needs a reason, in the caller's language too.
    assert_problem(move(rep, deal["id"], "lost"), 422, "lost_reason")
    chinese = rep.post(f"/opportunities/{deal['id']}/stage", json={"stage": "lost"},
                       headers={"Accept-Language": "zh-CN"})
    assert assert_problem(chinese, 422, "lost_reason")["errors"]["lost_reason"] == ["请说明输单原因。"]
    assert_problem(move(rep, deal["id"], "signed"), 422, "stage")
    assert_problem(move(rep, deal["id"], "needs_analysis"), 409)
    assert_problem(rep.patch(f"/opportunities/{deal['id']}", json={"next_step": "Quote"},
                             headers={"If-Match": 'W/"1"'}), 412)

    won = move(rep, deal["id"], "won", note="Signed")
    assert won.status_code == 200, won.text
    assert (won.json()["status"], won.json()["probability"]) == ("won", 100) and won.json()["closed_at"]

    # Closed: sales can neither change nor reopen it; their manager can reopen it.
    conflict = assert_problem(rep.patch(f"/opportunities/{deal['id']}", json={"amount": "1.00"}), 409)
    assert "won" in conflict["detail"]
    assert_problem(move(rep, deal["id"], "negotiation"), 403)
    reopened = move(manager, deal["id"], "negotiation", note="Scope changed")
    assert reopened.status_code == 200, reopened.text
    assert (reopened.json()["status"], reopened.json()["closed_at"]) == ("open", None)
    assert len(rep.get(f"/opportunities/{deal['id']}/history").json()["items"]) == 4

    assert_problem(stranger.get(f"/opportunities/{deal['id']}"), 404)
    assert_problem(move(stranger, deal["id"], "proposal"), 404)
    fetched = rep.get(f"/opportunities/{deal['id']}")
    assert fetched.status_code == 200 and fetched.headers["ETag"] == f'W/"{reopened.json()["version"]}"'


def test_refusals_leave_nothing_behind(system, make_user, team):
    rep = make_user("sales", team)
    viewer = make_user("viewer", team)
    customer_id = known_customer(rep)
    assert create_opportunity(rep, customer_id).status_code == 201

    assert_problem(rep.post("/opportunities", json={"customer_id": str(uuid.uuid4()), "title": "Ghost",
                                                    "amount": "1.00", "currency": "CNY"}), 422, "customer_id")
    assert_problem(rep.post("/opportunities", json={"customer_id": customer_id, "title": "Yen",
                                                    "amount": "10.5", "currency": "JPY"}), 422, "amount")
    assert_problem(rep.post("/opportunities", json={"customer_id": customer_id, "title": "Closed",
                                                    "amount": "1.00", "currency": "CNY", "stage": "won"}),
                   422, "stage")
    assert_problem(viewer.post("/opportunities", json={"customer_id": customer_id, "title": "No",
                                                       "amount": "1.00", "currency": "CNY"}), 403)
    assert len(rep.get("/opportunities").json()["items"]) == 1


def test_pipelines_the_board_and_the_filters(system, admin, make_user, team):
    rep = make_user("sales", team)
    manager = make_user("manager", team)
    customer_id = known_customer(rep)

    pipelines = rep.get("/pipelines").json()["items"]
    default = next(p for p in pipelines if p["is_default"])
    assert [(s["key"], s["probability"]) for s in default["stages"]] == [
        ("qualification", 10), ("needs_analysis", 25), ("proposal", 50), ("negotiation", 75), ("won", 100),
        ("lost", 0)]

    small = create_opportunity(rep, customer_id, amount="300.00", expected_close_date="2026-02-01").json()
    big = create_opportunity(rep, customer_id, amount="900.50", expected_close_date="2026-05-01").json()
    dollars = create_opportunity(rep, customer_id, amount="99.99", currency="USD", stage="proposal").json()
    lost = create_opportunity(rep, customer_id, amount="5000.00").json()
    assert move(rep, lost["id"], "lost", lost_reason="Went with a competitor").status_code == 200
    team_mate = create_opportunity(manager, customer_id, amount="10.00").json()

    board = rep.get(f"/pipelines/{default['id']}/board", params={"per_stage": 1}).json()
    columns = {column["stage"]["key"]: column for column in board["stages"]}
    assert list(columns) == ["qualification", "needs_analysis", "proposal", "negotiation"]
    assert (columns["qualification"]["count"], columns["qualification"]["totals"]) == (2, {"CNY": "1200.50"})
    assert [o["id"] for o in columns["qualification"]["opportunities"]] == [small["id"]]
    assert (columns["proposal"]["count"], columns["proposal"]["totals"]) == (1, {"USD": "99.99"})
    # The manager sees the team: the rep's open deals and their own.
    managed = manager.get(f"/pipelines/{default['id']}/board").json()["stages"][0]
    assert (managed["count"], managed["totals"]) == (3, {"CNY": "1210.50"})

    def ids(api=rep, **params):
        response = api.get("/opportunities", params=params)
        assert response.status_code == 200, response.text
        return [o["id"] for o in response.json()["items"]]

    assert ids(status="closed") == [lost["id"]]
    assert ids(stage="proposal") == [dollars["id"]]
    assert ids(amount_min="100", amount_max="1000", sort="-amount") == [big["id"], small["id"]]
    assert ids(close_from="2026-01-01", close_to="2026-03-31") == [small["id"]]
    assert set(ids(manager, owner_id=manager.user["id"])) == {team_mate["id"]}
    pages, cursor = [], None
    while True:
        page = rep.get("/opportunities", params={"limit": 2, "sort": "amount", **({"cursor": cursor} if cursor else {})})
        pages += [o["id"] for o in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert pages == [dollars["id"], small["id"], big["id"], lost["id"]]
    assert_problem(rep.get("/opportunities", params={"status": "maybe"}), 422, "status")
    assert_problem(rep.get("/opportunities", params={"sort": "title"}), 422, "sort")

    # Admins shape pipelines; nobody else does.
    body = {"name": unique("Renewals"), "stages": [
        {"key": "contacted", "name": "Contacted", "probability": 30},
        {"key": "renewed", "name": "Renewed", "probability": 100, "outcome": "won"},
        {"key": "churned", "name": "Churned", "probability": 0, "outcome": "lost"}]}
    assert_problem(rep.post("/pipelines", json=body), 403)
    assert_problem(admin.post("/pipelines", json={**body, "stages": body["stages"][:2]}), 422, "stages")
    created = admin.post("/pipelines", json=body)
    assert created.status_code == 201, created.text
    assert_problem(admin.post("/pipelines", json=body), 409, "name")
    grown = admin.post(f"/pipelines/{created.json()['id']}/stages",
                       json={"key": "offer", "name": "Offer sent", "probability": 60, "position": 1})
    assert grown.status_code == 201, grown.text
    assert [s["key"] for s in grown.json()["stages"]] == ["contacted", "offer", "renewed", "churned"]
    renewal = create_opportunity(rep, customer_id, pipeline_id=created.json()["id"]).json()
    assert (renewal["stage"], renewal["probability"]) == ("contacted", 30)
    assert move(rep, renewal["id"], "offer").json()["probability"] == 60
