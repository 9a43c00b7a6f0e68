"""Contacts, follow-ups, the day plan and saved views, as a frontend uses them over HTTP."""
import secrets
from datetime import datetime, timedelta, timezone

from api_helpers import assert_problem, unique


def now():
    return datetime.now(timezone.utc)


def iso(moment):
    return moment.isoformat()



def create_company(api, name):
    created = api.post("/customers", json={"kind": "company", "name": unique(name)})
    assert created.status_code == 201, created.text
    return created.json()



def test_contacts_crud_with_etags(system, make_user):
    rep = make_user("sales")
    company = create_company(rep, "Contact Works")
    contacts_url = f"/customers/{company['id']}/contacts"

    created = rep.post(contacts_url, json={"name": "Zhao Lei", "phones": ["138 0013 8000"],
                                           "emails": ["Zhao@Example.com"]})
    assert created.status_code == 201, created.text
    first = created.json()
    assert created.headers["Location"].endswith(f"{contacts_url}/{first['id']}")
    assert first["phones"] == ["+8613800138000"] and first["emails"] == ["zhao@example.com"]
    assert first["is_primary"] is True

    fetched = rep.get(f"{contacts_url}/{first['id']}")
    assert fetched.status_code == 200 and fetched.headers["ETag"] == 'W/"1"'

    stale = rep.patch(f"{contacts_url}/{first['id']}", json={"title": "CFO"}, headers={"If-Match": 'W/"9"'})
    assert_problem(stale, 412)
    fresh = rep.patch(f"{contacts_url}/{first['id']}", json={"title": "CFO"},
                      headers={"If-Match": fetched.headers["ETag"]})
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["title"] == "CFO" and fresh.headers["ETag"] == 'W/"2"'

    second = rep.post(contacts_url, json={"name": "Alpha Chen", "is_primary": True}).json()
    listed = rep.get(contacts_url).json()["items"]
    assert [(c["id"], c["is_primary"]) for c in listed] == [(second["id"], True), (first["id"], False)]

    # Contact names are part of the customer's keyword search.
    found = rep.get("/customers", params={"q": "alpha chen"}).json()["items"]
    assert company["id"] in [c["id"] for c in found]

    assert rep.delete(f"{contacts_url}/{second['id']}").status_code == 204
    assert_problem(rep.get(f"{contacts_url}/{second['id']}"), 404)
    assert [c["id"] for c in rep.get(contacts_url).json()["items"]] == [first["id"]]


def test_contact_rules_answer_with_problems(system, make_user):
    rep = make_user("sales")
    company = create_company(rep, "Rules Ltd")
    contacts_url = f"/customers/{company['id']}/contacts"

    invalid = rep.post(contacts_url, json={"name": "X", "emails": ["not-an-email"], "shoe_size": 42})
    assert_problem(invalid, 422, "emails")
    assert "shoe_size" in invalid.json()["errors"]
    assert rep.get(contacts_url).json()["items"] == []

    person = rep.post("/customers", json={"kind": "person", "name": unique("Solo Person"),
                                          "contact": {"emails": [f"{secrets.token_hex(4)}@solo.example"]}})
    assert person.status_code == 201, person.text
    assert_problem(rep.post(f"/customers/{person.json()['id']}/contacts", json={"name": "Nobody"}), 409)

    # Another rep does not see the customer, so not its contacts either.
    other = make_user("sales")
    assert_problem(other.get(contacts_url), 404)
    assert_problem(other.post(contacts_url, json={"name": "Sneaky"}), 404)

    viewer = make_user("viewer")
    assert viewer.get(contacts_url).status_code == 200
    assert_problem(viewer.post(contacts_url, json={"name": "Read Only"}), 403)


def test_a_repeated_contact_post_with_one_idempotency_key_adds_one_contact(system, make_user):
    rep = make_user("sales")
    company = create_company(rep, "Retry Ltd")
    contacts_url = f"/customers/{company['id']}/contacts"
    key = {"Idempotency-Key": secrets.token_hex(8)}
    first = rep.post(contacts_url, json={"name": "Once Only"}, headers=key)
    again = rep.post(contacts_url, json={"name": "Once Only"}, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert len(rep.get(contacts_url).json()["items"]) == 1


def due_names(api, **params):
    response = api.get("/followups", params=params)
    assert response.status_code == 200, response.text
    return [item["customer_name"] for item in response.json()["items"]]


def test_logging_follow_ups_moves_the_day_plan(system, make_user):
    rep = make_user("sales", team_id="plan-team")
    manager = make_user("manager", team_id="plan-team")
    outsider = make_user("sales", team_id="plan-team")
    company = create_company(rep, "Day Plan Co")
    followups_url = f"/customers/{company['id']}/followups"

    logged = rep.post(followups_url, json={
        "type": "call", "occurred_at": iso(now() - timedelta(hours=3)), "summary": "Asked for a quote",
        "next_followup_at": iso(now() - timedelta(hours=1))})
    assert logged.status_code == 201, logged.text
    first = logged.json()
    assert logged.headers["Location"].endswith(f"/followups/{first['id']}")

    assert company["name"] in due_names(rep)
    [item] = [i for i in rep.get("/followups").json()["items"] if i["customer_name"] == company["name"]]
    assert item["id"] == first["id"] and item["customer_id"] == company["id"]
    assert rep.get(f"/customers/{company['id']}").json()["next_followup_at"] is not None
    # The manager plans the team's day; another rep does not see this customer at all.
    assert company["name"] in due_names(manager, owner_id=rep.user["id"])
    assert due_names(outsider, owner_id=rep.user["id"]) == []

    # The next contact takes care of it and plans one in three days.
    later = rep.post(followups_url, json={"type": "visit", "summary": "Brought the quote",
                                          "next_followup_at": iso(now() + timedelta(days=3))})
    assert later.status_code == 201, later.text
    assert company["name"] not in due_names(rep)
    assert company["name"] in due_names(rep, due_before=iso(now() + timedelta(days=4)))
    closed = rep.get(f"/followups/{first['id']}").json()
    assert closed["closed_at"] is not None and closed["closed_by_followup_id"] == later.json()["id"]

    history = rep.get(followups_url).json()["items"]
    assert [f["id"] for f in history] == [later.json()["id"], first["id"]]
    assert_problem(outsider.get(f"/followups/{first['id']}"), 404)

    # Follow-ups are append-only.
    assert rep.patch(f"/followups/{first['id']}", json={"summary": "rewritten"}).status_code == 405


def test_invalid_follow_ups_name_the_field_and_write_nothing(system, make_user):
    rep = make_user("sales")
    company = create_company(rep, "Strict Times Ltd")
    followups_url = f"/customers/{company['id']}/followups"
    occurred = now() - timedelta(hours=1)
    backwards = rep.post(followups_url, json={"type": "call", "summary": "x", "occurred_at": iso(occurred),
                                              "next_followup_at": iso(occurred - timedelta(days=1))})
    assert_problem(backwards, 422, "next_followup_at")
    assert backwards.json()["errors"]["next_followup_at"] == ["Must be after occurred_at."]
    assert_problem(rep.post(followups_url, json={"type": "call", "summary": "x",
                                                 "occurred_at": iso(now() + timedelta(days=1))}),
                   422, "occurred_at")
    assert_problem(rep.post(followups_url, json={"type": "carrier pigeon", "summary": "x"}), 422, "type")
    chinese = rep.post(followups_url, json={"type": "call"}, headers={"Accept-Language": "zh-CN"})
    assert_problem(chinese, 422, "summary")
    assert chinese.json()["errors"]["summary"] == ["缺少必填字段。"]
    too_late = rep.post(followups_url, json={"type": "call", "summary": "x", "occurred_at": iso(occurred),
                                             "next_followup_at": iso(occurred)},
                        headers={"Accept-Language": "zh-CN"})
    assert too_late.json()["errors"]["next_followup_at"] == ["必须晚于 occurred_at。"]
    assert rep.get(followups_url).json()["items"] == []
    assert_problem(rep.get("/followups", params={"due_before": "tomorrow"}), 422, "due_before")
    assert make_user("viewer").post(followups_url, json={"type": "call", "summary": "x"}).status_code == 403


def test_saved_views_round_trip(system, make_user):
    rep = make_user("sales")
    created = rep.post("/customer-views", json={"name": "Hot A leads",
                                                 "filters": {"tier": "A", "lifecycle_stage": "lead"},
                                                 "sort": "-updated_at"})
    assert created.status_code == 201, created.text
    view = created.json()
    assert created.headers["Location"].endswith(f"/customer-views/{view['id']}")
    assert view["filters"] == {"tier": "A", "lifecycle_stage": "lead"}

    assert [v["id"] for v in rep.get("/customer-views").json()["items"]] == [view["id"]]
    assert rep.get(f"/customer-views/{view['id']}").json() == view
    assert_problem(rep.post("/customer-views", json={"name": "Hot A leads"}), 409)
    invalid = rep.post("/customer-views", json={"name": "Broken", "filters": {"tier": "Z"}, "sort": "colour"})
    assert_problem(invalid, 422, "filters.tier")
    assert "sort" in invalid.json()["errors"]

    # The stored filters work as the customer list's query.
    assert rep.get("/customers", params={**view["filters"], "sort": view["sort"]}).status_code == 200

    other = make_user("sales")
    assert other.get("/customer-views").json()["items"] == []
    assert_problem(other.get(f"/customer-views/{view['id']}"), 404)
    assert_problem(other.delete(f"/customer-views/{view['id']}"), 404)

    assert rep.delete(f"/customer-views/{view['id']}").status_code == 204
    assert_problem(rep.get(f"/customer-views/{view['id']}"), 404)
    assert rep.get("/customer-views").json()["items"] == []
