"""Reports end to end: customers, orders, opportunities, follow-ups and contracts made over HTTP by
users of two teams, and every report's figures (worked out by hand below) as each role sees them;
the files, the refusals, the consistency check and the rebuild.

One set of records serves the whole module (building it is most of the time). It lives in two teams
and a region of its own, so the admin's figures are read through ``region=`` or ``team=``: other
modules' records in the same system never enter them. Order dates cannot be chosen (an order is placed
when it is confirmed, now), so every sale falls in the current month; follow-ups may be dated back.
"""
import csv
import io
import secrets
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import openpyxl
import psycopg2
import pytest

from api_helpers import assert_problem, new_user, once_sales_knows, unique
from conftest import wait_until

SETTLE_SECONDS = 30
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def utc_today():
    return datetime.now(timezone.utc).date()


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def next_month_day(day):
    first_of_next = (utc_today().replace(day=1) + timedelta(days=32)).replace(day=1)
    return first_of_next.replace(day=day)


# --- making the records ---------------------------------------------------------------

def until_sales_knows_customer(post):
    response = once_sales_knows(post)
    assert response.status_code == 201, response.text
    return response.json()


def new_customer(api, region, **fields):
    created = api.post("/customers", json={"kind": "company", "name": unique("Report Co"), "region": region,
                                           **fields})
    assert created.status_code == 201, created.text
    return created.json()


def new_product(admin, list_price, tax_rate, currency="CNY"):
    created = admin.post("/products", json={"sku": f"RPT-{secrets.token_hex(4)}", "name": "Report widget",
                                            "unit": "piece", "list_price": list_price, "currency": currency,
                                            "tax_rate": tax_rate})
    assert created.status_code == 201, created.text
    return created.json()


def new_order(api, customer, product, quantity):
    return until_sales_knows_customer(lambda: api.post("/orders", json={
        "customer_id": customer["id"], "lines": [{"product_id": product["id"], "quantity": quantity}]}))


def act(response, status=200):
    assert response.status_code == status, response.text
    return response.json()


def new_opportunity(api, customer, amount, **fields):
    return until_sales_knows_customer(lambda: api.post("/opportunities", json={
        "customer_id": customer["id"], "title": "Report deal", "amount": amount, "currency": "CNY", **fields}))


def move(api, opportunity, *stages):
    for stage in stages:
        body = {"stage": stage, **({"lost_reason": "Price"} if stage == "lost" else {})}
        act(api.post(f"/opportunities/{opportunity['id']}/stage", json=body))


def log_followup(api, customer, kind, days_ago):
    act(api.post(f"/customers/{customer['id']}/followups", json={
        "type": kind, "summary": "Talked about the reports",
        "occurred_at": iso(datetime.now(timezone.utc) - timedelta(days=days_ago))}), 201)


def new_contract(api, customer, value, ends_in_days, currency="CNY"):
    return until_sales_knows_customer(lambda: api.post("/contracts", json={
        "customer_id": customer["id"], "title": unique("Service contract"), "value": value, "currency": currency,
        "start_date": utc_today().isoformat(),
        "end_date": (utc_today() + timedelta(days=ends_in_days)).isoformat()}))


def signed_contract(author, approver, customer, value, ends_in_days):
    contract = new_contract(author, customer, value, ends_in_days)
    act(author.post(f"/contracts/{contract['id']}/submit"))
    act(approver.post(f"/contracts/{contract['id']}/approve"))
    signed = act(author.post(f"/contracts/{contract['id']}/sign", json={}))
    assert signed["status"] == "active"  # it starts today
    return signed


class World:
    """Everything the module made, and who made it."""


@pytest.fixture(scope="module")
def world(system, admin):
    w = World()
    w.admin = admin
    tag = secrets.token_hex(3)
    w.team_a, w.team_b, w.region = f"rep-a-{tag}", f"rep-b-{tag}", f"report-region-{tag}"
    w.rep1 = new_user(system, admin, "sales", w.team_a)
    w.rep2 = new_user(system, admin, "sales", w.team_a)
    w.manager = new_user(system, admin, "manager", w.team_a)
    w.rep3 = new_user(system, admin, "sales", w.team_b)

    # Customers: c1, c2 of rep1; c3 of rep2; c4 of rep3 (churns); c5 of rep1 (deleted).
    w.c1 = new_customer(w.rep1, w.region, tier="A", industry="manufacturing", source="trade fair",
                        lifecycle_stage="customer")
    w.c2 = new_customer(w.rep1, w.region, tier="B", industry="retail", lifecycle_stage="prospect")
    w.c3 = new_customer(w.rep2, w.region, tier="A", industry="manufacturing", lifecycle_stage="lead")
    w.c4 = new_customer(w.rep3, w.region, tier="C", lifecycle_stage="customer")
    w.c5 = new_customer(w.rep1, w.region, tier="A", lifecycle_stage="lead")
    act(w.rep3.patch(f"/customers/{w.c4['id']}", json={"lifecycle_stage": "churned"}))
    assert w.rep1.delete(f"/customers/{w.c5['id']}").status_code == 204

    # Products: P1 100.00 + 13% tax, P2 50.00 untaxed, P3 10.00 USD untaxed.
    w.p1 = new_product(admin, "100.00", "13")
    w.p2 = new_product(admin, "50.00", "0")
    w.p3 = new_product(admin, "10.00", "0", currency="USD")

    # Orders. o1 rep1/c1: 2 x P1 = 226.00, paid in full. o2 rep1/c2: 3 x P2 = 150.00, 50.00 paid.
    # o3 rep2/c3: 1 x P1 = 113.00 unpaid. o4 rep1/c1: 1 x P2 = 50.00, cancelled. o5 rep3/c4: 1 x P1 =
    # 113.00. o6 rep3/c4: 4 x P3 = 40.00 USD. o7 rep1/c2: a draft, never placed.
    def placed(api, customer, product, quantity):
        order = new_order(api, customer, product, quantity)
        return act(api.post(f"/orders/{order['id']}/confirm"))

    w.o1 = placed(w.rep1, w.c1, w.p1, 2)
    act(w.rep1.post(f"/orders/{w.o1['id']}/payments", json={"amount": "226.00", "method": "bank_transfer"}), 201)
    w.o2 = placed(w.rep1, w.c2, w.p2, 3)
    act(w.rep1.post(f"/orders/{w.o2['id']}/payments", json={"amount": "50.00", "method": "card"}), 201)
    w.o3 = placed(w.rep2, w.c3, w.p1, 1)
    w.o4 = placed(w.rep1, w.c1, w.p2, 1)
    act(w.rep1.post(f"/orders/{w.o4['id']}/cancel", json={"reason": "Ordered twice"}))
    w.o5 = placed(w.rep3, w.c4, w.p1, 1)
    w.o6 = placed(w.rep3, w.c4, w.p3, 4)
    new_order(w.rep1, w.c2, w.p1, 5)
    assert [w.o1["total"], w.o2["total"], w.o3["total"], w.o5["total"], w.o6["total"]] == [
        "226.00", "150.00", "113.00", "113.00", "40.00"]

    # Opportunities, default pipeline. op1 rep1: through every open stage to won. op2 rep1: lost.
    # op3 rep2: skips to proposal (50%), 2000.00 closing next month. op5 rep2: 1000.00 at 30%, next
    # month. op6 rep2: 500.00 (10%), no close date. op4 rep3 (other team): won at once.
    w.op1 = new_opportunity(w.rep1, w.c1, "8000.00")
    move(w.rep1, w.op1, "needs_analysis", "proposal", "negotiation", "won")
    w.op2 = new_opportunity(w.rep1, w.c2, "3000.00")
    move(w.rep1, w.op2, "lost")
    w.op3 = new_opportunity(w.rep2, w.c3, "2000.00", expected_close_date=next_month_day(15).isoformat())
    move(w.rep2, w.op3, "proposal")
    w.op5 = new_opportunity(w.rep2, w.c3, "1000.00", probability=30,
                            expected_close_date=next_month_day(20).isoformat())
    w.op6 = new_opportunity(w.rep2, w.c3, "500.00")
    w.op4 = new_opportunity(w.rep3, w.c4, "700.00")
    move(w.rep3, w.op4, "won")

    # Follow-ups: rep1 calls c1 (2 days ago), meets c1 (yesterday), visited c2 10 days ago; rep2
    # emails c3 today.
    log_followup(w.rep1, w.c1, "call", 2)
    log_followup(w.rep1, w.c1, "meeting", 1)
    log_followup(w.rep1, w.c2, "visit", 10)
    log_followup(w.rep2, w.c3, "email", 0)

    # Contracts of rep1: k1 12000.00 ends in 20 days, k2 5000.00 ends in 200 days (both active),
    # k3 700.00 a draft. rep3: k4 9000.00, a draft.
    w.k1 = signed_contract(w.rep1, w.manager, w.c1, "12000.00", 20)
    w.k2 = signed_contract(w.rep1, w.manager, w.c2, "5000.00", 200)
    w.k3 = new_contract(w.rep1, w.c1, "700.00", 90)
    w.k4 = new_contract(w.rep3, w.c4, "9000.00", 90)
    return w


def report(api, path, **params):
    response = api.get(f"/reports/{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def settled(read, expected, message):
    """Wait until ``read()`` equals ``expected`` (the read models follow events); the last read shows the diff."""
    try:
        wait_until(lambda: read() == expected, SETTLE_SECONDS, interval=0.2, message=message)
    except AssertionError:
        assert read() == expected, message


def sales_rows(body, *keys):
    return sorted(tuple(row[key] for key in keys) for row in body["rows"])


def as_dict(items, key="key", value="count"):
    return {item[key]: item[value] for item in items}


def this_month():
    return utc_today().strftime("%Y-%m")


# --- sales ----------------------------------------------------------------------------------

def period_totals(body):
    return sorted((t["currency"], t["orders"], t["revenue"], t["paid"], t["outstanding"], t["average_order_value"])
                  for t in body["totals"])


EVERYTHING = [("CNY", 4, "602.00", "276.00", "326.00", "150.50"), ("USD", 1, "40.00", "0.00", "40.00", "40.00")]


def test_sales_by_period_counts_placed_orders_as_each_role_may_see_them(world):
    w = world
    # rep1: o1 226.00 (paid) + o2 150.00 (50.00 paid); neither the cancelled o4 nor the draft counts.
    settled(lambda: period_totals(report(w.rep1, "sales/by-period")),
            [("CNY", 2, "376.00", "276.00", "100.00", "188.00")], "rep1's sales")
    # The manager: the team's (rep1 and rep2), not rep3's.
    settled(lambda: period_totals(report(w.manager, "sales/by-period")),
            [("CNY", 3, "489.00", "276.00", "213.00", "163.00")], "the team's sales")
    settled(lambda: period_totals(report(w.rep2, "sales/by-period")),
            [("CNY", 1, "113.00", "0.00", "113.00", "113.00")], "rep2's sales")
    # Currencies are never added together.
    settled(lambda: period_totals(report(w.rep3, "sales/by-period")),
            [("CNY", 1, "113.00", "0.00", "113.00", "113.00"), ("USD", 1, "40.00", "0.00", "40.00", "40.00")],
            "rep3's sales")
    # The admin sees everyone's (here narrowed to this module's region), and may narrow by team or owner.
    settled(lambda: period_totals(report(w.admin, "sales/by-period", region=w.region)), EVERYTHING, "all sales")
    assert period_totals(report(w.admin, "sales/by-period", team=w.team_a)) == \
        [("CNY", 3, "489.00", "276.00", "213.00", "163.00")]
    assert period_totals(report(w.admin, "sales/by-period", owner_id=w.rep2.user["id"])) == \
        [("CNY", 1, "113.00", "0.00", "113.00", "113.00")]
    # A filter narrows what a sales user sees, never widens it.
    assert report(w.rep1, "sales/by-period", owner_id=w.rep2.user["id"])["totals"] == []
    assert report(w.rep1, "sales/by-period", team=w.team_b)["totals"] == []

    body = report(w.admin, "sales/by-period", region=w.region, granularity="day")
    today = utc_today().isoformat()
    assert sorted((row["period"], row["period_start"], row["currency"], row["revenue"]) for row in body["rows"]) == [
        (today, today, "CNY", "602.00"), (today, today, "USD", "40.00")]
    monthly = report(w.rep1, "sales/by-period")
    assert (monthly["granularity"], monthly["to"]) == ("month", today)
    assert [(row["period"], row["period_start"], row["orders"]) for row in monthly["rows"]] == [
        (this_month(), utc_today().replace(day=1).isoformat(), 2)]


def test_sales_by_owner_names_each_owner(world):
    w = world
    expected = sorted([
        (w.rep1.user["id"], w.rep1.user["name"], "CNY", 2, "376.00", "276.00", "100.00"),
        (w.rep2.user["id"], w.rep2.user["name"], "CNY", 1, "113.00", "0.00", "113.00"),
        (w.rep3.user["id"], w.rep3.user["name"], "CNY", 1, "113.00", "0.00", "113.00"),
        (w.rep3.user["id"], w.rep3.user["name"], "USD", 1, "40.00", "0.00", "40.00"),
    ])
    keys = ("owner_id", "owner_name", "currency", "orders", "revenue", "paid", "outstanding")
    settled(lambda: sales_rows(report(w.admin, "sales/by-owner", region=w.region), *keys), expected,
            "sales by owner")
    assert report(w.admin, "sales/by-owner", region=w.region)["rows"][0]["owner_id"] == w.rep1.user["id"]
    team = (w.rep1.user["id"], w.rep2.user["id"])
    assert sales_rows(report(w.manager, "sales/by-owner"), *keys) == [row for row in expected if row[0] in team]
    assert sales_rows(report(w.rep2, "sales/by-owner"), "owner_id", "revenue") == [(w.rep2.user["id"], "113.00")]


def test_sales_by_product_shares_each_currencys_revenue(world):
    w = world

    def products():
        return sorted((row["product_id"], row["sku"], row["currency"], Decimal(row["quantity"]), row["revenue"],
                       row["share"]) for row in report(w.admin, "sales/by-product", region=w.region)["rows"])
    # P1: o1 2 + o3 1 + o5 1 = 4 pieces, 226 + 113 + 113 = 452.00 of 602.00 CNY; P2: o2's 3 (o4 was
    # cancelled), 150.00; P3: 40.00, all of the USD revenue.
    settled(products, sorted([(w.p1["id"], w.p1["sku"], "CNY", Decimal(4), "452.00", "75.08"),
                              (w.p2["id"], w.p2["sku"], "CNY", Decimal(3), "150.00", "24.92"),
                              (w.p3["id"], w.p3["sku"], "USD", Decimal(4), "40.00", "100.00")]), "sales by product")
    only = report(w.admin, "sales/by-product", region=w.region, product_id=w.p2["id"])["rows"]
    assert [(row["product_id"], row["revenue"]) for row in only] == [(w.p2["id"], "150.00")]
    assert sorted((row["product_id"], row["revenue"]) for row in report(w.rep1, "sales/by-product")["rows"]) == \
        sorted([(w.p1["id"], "226.00"), (w.p2["id"], "150.00")])


def test_top_customers_by_revenue(world):
    w = world
    keys = ("customer_id", "name", "currency", "orders", "revenue", "paid")
    settled(lambda: sales_rows(report(w.admin, "sales/top-customers", region=w.region), *keys), sorted([
        (w.c1["id"], w.c1["name"], "CNY", 1, "226.00", "226.00"),
        (w.c2["id"], w.c2["name"], "CNY", 1, "150.00", "50.00"),
        (w.c3["id"], w.c3["name"], "CNY", 1, "113.00", "0.00"),
        (w.c4["id"], w.c4["name"], "CNY", 1, "113.00", "0.00"),
        (w.c4["id"], w.c4["name"], "USD", 1, "40.00", "0.00")]), "top customers")
    top_two = report(w.admin, "sales/top-customers", region=w.region, limit="2")["rows"]
    assert [(row["customer_id"], row["revenue"]) for row in top_two] == [(w.c1["id"], "226.00"),
                                                                         (w.c2["id"], "150.00")]
    assert [row["customer_id"] for row in report(w.admin, "sales/top-customers", region=w.region, tier="A")[
        "rows"]] == [w.c1["id"], w.c3["id"]]


# --- opportunities ----------------------------------------------------------------------------

def funnel(body):
    return {"opportunities": body["opportunities"], "open": body["open"], "won": body["won"], "lost": body["lost"],
            "win_rate": body["win_rate"],
            "stages": [(stage["stage"], stage["outcome"], stage["entered"],
                        stage["conversion_rate"] if stage["outcome"] == "open" else "-")
                       for stage in body["stages"]]}


def test_the_funnel_of_the_default_pipeline(world):
    w = world
    # The team's cohort: op1 (won through every stage), op2 (lost), op3 (skipped to proposal), op5 and
    # op6 (still in qualification). Entered: qualification 5; needs analysis op1 + op3 (skipping counts);
    # proposal op1 + op3; negotiation op1; won op1; lost op2.
    team_funnel = {"opportunities": 5, "open": 3, "won": 1, "lost": 1, "win_rate": "50.00", "stages": [
        ("qualification", "open", 5, "40.00"), ("needs_analysis", "open", 2, "100.00"),
        ("proposal", "open", 2, "50.00"), ("negotiation", "open", 1, "100.00"),
        ("won", "won", 1, "-"), ("lost", "lost", 1, "-")]}
    settled(lambda: funnel(report(w.manager, "sales/funnel")), team_funnel, "the team's funnel")
    assert funnel(report(w.admin, "sales/funnel", team=w.team_a)) == team_funnel
    body = report(w.admin, "sales/funnel", team=w.team_a)
    default_pipeline = w.admin.get("/pipelines").json()["items"][0]
    assert default_pipeline["is_default"] and body["pipeline"] == default_pipeline["id"]
    assert funnel(report(w.admin, "sales/funnel", team=w.team_a, pipeline=default_pipeline["id"])) == team_funnel
    # Everything here closed within seconds of its creation.
    assert body["average_sales_cycle_days"] == "0.0"
    assert [stage["average_days_in_stage"] for stage in body["stages"][:4]] == ["0.0"] * 4
    assert [stage["position"] for stage in body["stages"]] == sorted(stage["position"] for stage in body["stages"])

    mine = funnel(report(w.rep1, "sales/funnel"))
    assert (mine["opportunities"], mine["open"], mine["won"], mine["lost"], mine["win_rate"]) == (2, 0, 1, 1, "50.00")
    assert [entered for _, _, entered, _ in mine["stages"]] == [2, 1, 1, 1, 1, 1]
    other = funnel(report(w.rep3, "sales/funnel"))
    assert (other["opportunities"], other["won"], other["lost"], other["win_rate"]) == (1, 1, 0, "100.00")


def test_the_forecast_weighs_open_opportunities_by_probability(world):
    w = world
    month = next_month_day(1).strftime("%Y-%m")
    rep2 = w.rep2.user["id"]
    # Next month: op3 2000.00 at 50% + op5 1000.00 at 30% = 1300.00 weighted; op6 500.00 at 10%, undated.
    expected = [(month, rep2, "CNY", 2, "3000.00", "1300.00"), (None, rep2, "CNY", 1, "500.00", "50.00")]

    def rows(api, **params):
        body = report(api, "sales/forecast", **params)
        return sorted(((row["month"], row["owner_id"], row["currency"], row["opportunities"], row["amount"],
                        row["weighted_amount"]) for row in body["rows"]), key=lambda row: row[0] or "~")
    settled(lambda: rows(w.rep2), expected, "rep2's forecast")
    assert rows(w.manager) == expected  # rep1 has nothing open
    assert rows(w.rep1) == []
    assert rows(w.admin, team=w.team_a) == expected
    body = report(w.rep2, "sales/forecast")
    assert sorted(((row["month"], row["opportunities"], row["weighted_amount"]) for row in body["by_month"]),
                  key=lambda row: row[0] or "~") == [(month, 2, "1300.00"), (None, 1, "50.00")]
    assert body["rows"][0]["owner_name"] == w.rep2.user["name"]
    assert body["from"] == utc_today().replace(day=1).isoformat()


# --- customers and activities ---------------------------------------------------------------------

def test_the_customers_summary(world):
    w = world

    def summary(api, **params):
        body = report(api, "customers/summary", **params)
        return {"total": body["total"], "stages": as_dict(body["by_lifecycle_stage"]),
                "tiers": as_dict(body["by_tier"]), "new": sum(row["count"] for row in body["new_customers"]),
                "churned": sum(row["count"] for row in body["churned"])}
    # rep1: c1 and c2 (c5 was deleted); every stage is listed, 0 included.
    settled(lambda: summary(w.rep1), {"total": 2, "stages": {"lead": 0, "prospect": 1, "customer": 1, "churned": 0},
                                      "tiers": {"A": 1, "B": 1}, "new": 2, "churned": 0}, "rep1's customers")
    everything = {"total": 4, "stages": {"lead": 1, "prospect": 1, "customer": 1, "churned": 1},
                  "tiers": {"A": 2, "B": 1, "C": 1}, "new": 4, "churned": 1}
    settled(lambda: summary(w.admin, region=w.region), everything, "all customers")
    assert summary(w.manager)["total"] == 3
    assert summary(w.admin, region=w.region, tier="A")["total"] == 2
    body = report(w.admin, "customers/summary", region=w.region)
    assert as_dict(body["by_industry"]) == {"manufacturing": 2, "retail": 1, None: 1}
    assert body["by_industry"][0] == {"key": "manufacturing", "count": 2}  # the most first
    assert as_dict(body["by_source"]) == {"trade fair": 1, None: 3}
    assert as_dict(body["by_region"]) == {w.region: 4}
    assert [(row["period"], row["count"]) for row in body["churned"]] == [(this_month(), 1)]
    assert [(row["period"], row["count"]) for row in body["new_customers"]] == [(this_month(), 4)]


def test_activities_count_followups_and_find_customers_left_alone(world):
    w = world
    rep1, rep2 = w.rep1.user["id"], w.rep2.user["id"]

    def followups(api, **params):
        counts = {}
        for row in report(api, "activities", **params)["followups"]:
            assert row["total"] == sum(row["by_type"].values())
            for kind, count in row["by_type"].items():
                key = (row["user_id"], row["user_name"], kind)
                counts[key] = counts.get(key, 0) + count
        return counts
    mine = {(rep1, w.rep1.user["name"], "call"): 1, (rep1, w.rep1.user["name"], "meeting"): 1,
            (rep1, w.rep1.user["name"], "visit"): 1}
    settled(lambda: followups(w.rep1), mine, "rep1's follow-ups")
    settled(lambda: followups(w.manager), {**mine, (rep2, w.rep2.user["name"], "email"): 1}, "the team's follow-ups")
    # The 10-day-old visit falls outside a range of the last week.
    week = {"from": (utc_today() - timedelta(days=7)).isoformat()}
    assert sorted(kind for _, _, kind in followups(w.rep1, **week)) == ["call", "meeting"]

    # c2's last contact was 10 days ago; c1's yesterday, c3's today.
    inactive = report(w.manager, "activities", days="5")["inactive_customers"]
    assert (inactive["days"], inactive["count"]) == (5, 1)
    [item] = inactive["items"]
    assert (item["customer_id"], item["name"], item["owner_id"], item["owner_name"]) == (
        w.c2["id"], w.c2["name"], rep1, w.rep1.user["name"])
    last = datetime.fromisoformat(item["last_followup_at"].replace("Z", "+00:00"))
    assert timedelta(days=10) <= datetime.now(timezone.utc) - last < timedelta(days=10, minutes=10)
    assert report(w.manager, "activities", days="30")["inactive_customers"]["count"] == 0
    assert report(w.rep2, "activities", days="5")["inactive_customers"]["count"] == 0


def test_the_contracts_report(world):
    w = world

    def contracts(api, **params):
        body = report(api, "contracts", **params)
        return {"active": (body["active"]["count"], as_dict(body["active"]["value"], "currency", "value")),
                "expiring": [(item["contract_id"], item["value"], item["status"], item["end_date"])
                             for item in body["expiring"]["items"]],
                "expiring_count": body["expiring"]["count"],
                "by_status": sorted((row["status"], row["currency"], row["count"], row["value"])
                                    for row in body["by_status"])}
    # rep1: k1 (12000.00, ends in 20 days) and k2 (5000.00, in 200) are active; k3 700.00 a draft.
    k1_end = (utc_today() + timedelta(days=20)).isoformat()
    mine = {"active": (2, {"CNY": "17000.00"}), "expiring": [(w.k1["id"], "12000.00", "active", k1_end)],
            "expiring_count": 1,
            "by_status": [("active", "CNY", 2, "17000.00"), ("draft", "CNY", 1, "700.00")]}
    settled(lambda: contracts(w.rep1), mine, "rep1's contracts")
    assert contracts(w.manager) == mine
    assert contracts(w.rep3) == {"active": (0, {}), "expiring": [], "expiring_count": 0,
                                 "by_status": [("draft", "CNY", 1, "9000.00")]}
    assert contracts(w.admin, team=w.team_a) == mine
    assert contracts(w.rep1, days="365")["expiring_count"] == 2
    body = report(w.rep1, "contracts")
    assert body["as_of"] == utc_today().isoformat() and body["expiring"]["days"] == 30
    assert body["expiring"]["items"][0]["owner_name"] == w.rep1.user["name"]


# --- files and refusals ---------------------------------------------------------------------------

def test_reports_download_as_csv_and_xlsx(world):
    w = world
    settled(lambda: period_totals(report(w.rep1, "sales/by-period")),
            [("CNY", 2, "376.00", "276.00", "100.00", "188.00")], "rep1's sales")

    as_csv = w.rep1.get("/reports/sales/by-period", params={"format": "csv"})
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["Content-Type"].startswith("text/csv")
    assert as_csv.headers["Content-Disposition"].startswith("attachment; filename=")
    assert as_csv.content.startswith(b"\xef\xbb\xbf")  # Excel reads it as UTF-8
    csv_rows = list(csv.DictReader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert as_csv.headers["X-Total-Count"] == str(len(csv_rows))
    # The month's row, then the total per currency.
    assert [(row["period"], row["currency"], row["orders"], Decimal(row["revenue"]), Decimal(row["outstanding"]))
            for row in csv_rows] == [(this_month(), "CNY", "2", Decimal("376.00"), Decimal("100.00")),
                                     ("total", "CNY", "2", Decimal("376.00"), Decimal("100.00"))]

    as_xlsx = w.rep1.get("/reports/sales/by-owner", params={"format": "xlsx"})
    assert as_xlsx.status_code == 200, as_xlsx.text
    assert as_xlsx.headers["Content-Type"].startswith(XLSX)
    sheet = openpyxl.load_workbook(io.BytesIO(as_xlsx.content)).active
    header, *rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    records = [dict(zip(header, row)) for row in rows]
    assert [(r["owner_id"], r["currency"], Decimal(str(r["revenue"])), Decimal(str(r["paid"]))) for r in records] == [
        (w.rep1.user["id"], "CNY", Decimal("376.00"), Decimal("276.00"))]

    # The funnel's file is its stages, for the default pipeline too.
    stages = w.manager.get("/reports/sales/funnel", params={"format": "csv"})
    assert stages.status_code == 200, stages.text
    entered = {row["stage"]: row["entered"]
               for row in csv.DictReader(io.StringIO(stages.content.decode("utf-8-sig")))}
    assert (entered["qualification"], entered["won"]) == ("5", "1")


@pytest.mark.parametrize("path, params, field", [
    ("sales/by-period", {"from": "2026-13-01"}, "from"),
    ("sales/by-period", {"from": "2026-06-01", "to": "2026-01-01"}, "from"),
    ("sales/by-period", {"granularity": "day", "from": "2020-01-01", "to": "2026-01-01"}, "granularity"),
    ("sales/by-period", {"granularity": "fortnight"}, "granularity"),
    ("sales/by-owner", {"colour": "red"}, "colour"),
    ("sales/by-owner", {"format": "pdf"}, "format"),
    ("sales/top-customers", {"limit": "101"}, "limit"),
    ("sales/funnel", {"pipeline": "not-a-pipeline"}, "pipeline"),
    ("contracts", {"days": "0"}, "days"),
    ("contracts", {"from": "2026-01-01"}, "from"),
    ("customers/summary", {"owner_id": "someone"}, "owner_id"),
    ("activities", {"to": "yesterday"}, "to"),
])
def test_bad_filters_are_422_naming_the_field(system, admin, path, params, field):
    assert_problem(admin.get(f"/reports/{path}", params=params), 422, field)


# --- consistency and rebuild -------------------------------------------------------------------------

def test_consistency_and_rebuild_are_for_admins_only(world):
    w = world
    for api in (w.manager, w.rep1):
        assert_problem(api.get("/reports/consistency"), 403)
        assert_problem(api.post("/reports/rebuild"), 403)


def snapshot(w):
    """What the reports say about this module's records (to compare before and after a rebuild)."""
    return {
        "sales": period_totals(report(w.admin, "sales/by-period", region=w.region)),
        "owners": sales_rows(report(w.admin, "sales/by-owner", region=w.region), "owner_id", "currency", "revenue"),
        "products": sales_rows(report(w.admin, "sales/by-product", region=w.region), "product_id", "revenue"),
        "customers": report(w.admin, "customers/summary", region=w.region)["by_lifecycle_stage"],
        "funnel": funnel(report(w.admin, "sales/funnel", team=w.team_a)),
        "forecast": report(w.admin, "sales/forecast", team=w.team_a)["by_month"],
        "activities": report(w.manager, "activities", days="5")["inactive_customers"],
        "contracts": report(w.admin, "contracts", team=w.team_a)["by_status"],
    }


def reporting_sql(system, *statements):
    dsn = system.env["CRM_REPORTING_DB_URL"].replace("+psycopg2", "")
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        for statement, params in statements:
            cursor.execute(statement, params)


def test_the_reports_agree_with_the_sources_and_a_rebuild_restores_lost_rows(system, world):
    w = world
    settled(lambda: period_totals(report(w.admin, "sales/by-period", region=w.region)), EVERYTHING, "all sales")

    def consistent():
        response = w.admin.get("/reports/consistency")
        assert response.status_code == 200, response.text
        return response.json() if response.json()["consistent"] else None
    checked = wait_until(consistent, SETTLE_SECONDS, interval=0.5, message="the reports to agree with the sources")
    assert checked["differences"] == []
    assert {"customers", "orders"} <= {check["name"] for check in checked["checks"]}
    assert all(check["difference"] in (0, "0", "0.00") for check in checked["checks"])

    before = snapshot(w)
    # Lose this module's rows behind the service's back, as a failed disk or a bad migration might.
    teams = (w.team_a, w.team_b)
    reporting_sql(system, *[(f"DELETE FROM {table} WHERE owner_team_id IN %s", (teams,)) for table in (
        "order_line_facts", "order_facts", "opportunity_facts", "stage_change_facts", "followup_facts",
        "contract_facts")], ("DELETE FROM customer_facts WHERE region = %s", (w.region,)))
    assert report(w.admin, "sales/by-period", region=w.region)["totals"] == []
    assert report(w.rep1, "contracts")["by_status"] == []
    lost = w.admin.get("/reports/consistency").json()
    assert lost["consistent"] is False and lost["differences"]

    started = w.admin.post("/reports/rebuild")
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    assert location == f"/api/v1/reports/rebuild/{started.json()['id']}"
    assert started.json()["status"] in ("running", "done")
    path = location.removeprefix("/api/v1")

    def finished():
        run = w.admin.get(path).json()
        return run if run["status"] != "running" else None
    run = wait_until(finished, 120, interval=0.5, message="the rebuild to finish")
    assert run["status"] == "done", run
    assert run["finished_at"] and run["counts"]

    assert snapshot(w) == before
    assert wait_until(consistent, SETTLE_SECONDS, interval=0.5, message="consistent after the rebuild")
