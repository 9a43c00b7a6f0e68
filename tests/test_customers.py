"""Customer records end to end: what a sales team does in a day, over HTTP."""
import secrets

from api_helpers import assert_problem, phone, unique
from conftest import wait_until





def summary_total(api):
    return api.get("/reports/customers/summary").json()["total"]


def test_a_customer_record_from_creation_through_history(system, make_user):
    rep = make_user("sales")
    number = phone()
    created = rep.post("/customers", json={
        "kind": "company", "name": unique("Müller Maschinenbau"),
        "company": {"industry": "Machinery", "size": "50-249", "website": "https://mueller.example"},
        "contact": {"phones": [number], "emails": ["Einkauf@Mueller.example"],
                    "address": {"country": "DE", "region": "Bavaria", "city": "München"}},
        "tags": ["export ", "export", "vip"], "tier": "B", "source": "trade fair", "industry": "Machinery",
    })
    assert created.status_code == 201, created.text
    customer = created.json()
    assert customer["contact"]["phones"] == ["+86139" + number[8:].replace(" ", "")]
    assert customer["contact"]["emails"] == ["einkauf@mueller.example"]
    assert customer["tags"] == ["export", "vip"]
    assert created.headers["Location"].endswith(customer["id"])

    changed = rep.patch(f"/customers/{customer['id']}", json={"tier": "A", "lifecycle_stage": "prospect"},
                        headers={"If-Match": created.headers["ETag"]})
    assert changed.status_code == 200, changed.text
    assert set(changed.json()["lifecycle_dates"]) == {"lead", "prospect"}

    history = rep.get(f"/customers/{customer['id']}/history").json()["items"]
    assert [entry["action"] for entry in history] == ["updated", "created"]
    assert history[0]["changes"]["tier"] == {"old": "B", "new": "A"}
    assert history[0]["changes"]["lifecycle_stage"] == {"old": "lead", "new": "prospect"}
    assert history[0]["actor_id"] == rep.user["id"] and history[0]["occurred_at"]

    # Found by keyword without the umlaut, by part of a word, and by phone in another spelling.
    assert customer["id"] in [c["id"] for c in rep.get("/customers", params={"q": "muller masch"}).json()["items"]]
    by_phone = rep.get("/customers", params={"phone": number.replace(" ", "-")}).json()["items"]
    assert [c["id"] for c in by_phone] == [customer["id"]]
    by_tags = rep.get("/customers", params=[("tag", "vip"), ("tag", "export")]).json()["items"]
    assert [c["id"] for c in by_tags] == [customer["id"]]


def test_bad_input_names_the_field_in_the_callers_language(system, make_user):
    rep = make_user("sales")
    assert_problem(rep.post("/customers", json={"kind": "person", "name": "Nobody"}), 422, "contact")
    assert_problem(rep.post("/customers", json={"kind": "company", "name": "X", "tier": "S"}), 422, "tier")
    assert_problem(rep.post("/customers", json={"kind": "company", "name": "X", "colour": "red"}), 422, "colour")
    bad_phone = assert_problem(rep.post("/customers", json={
        "kind": "person", "name": "X", "contact": {"phones": ["12345"]}}), 422, "contact")
    assert "country code" in str(bad_phone["errors"])
    assert_problem(rep.get("/customers", params={"sort": "salary"}), 422, "sort")
    assert_problem(rep.get("/customers", params={"created_from": "yesterday"}), 422, "created_from")
    assert_problem(rep.post("/customers?allow_duplicate=maybe", json={"kind": "company", "name": "X"}),
                   422, "allow_duplicate")
    chinese = rep.post("/customers", json={"kind": "company", "name": "X", "tier": "S"},
                       headers={"Accept-Language": "zh-CN"})
    assert chinese.status_code == 422 and chinese.json()["title"] != "The input is not valid"
    assert rep.get("/customers", params={"q": "Nobody"}).json()["items"] == []


def test_duplicates_are_caught_listed_and_merged(system, admin, make_user):
    rep = make_user("sales")
    number = phone()
    name = unique("Sino Trade")
    first = rep.post("/customers", json={"kind": "person", "name": "Wang Fang", "company": {"name": name},
                                         "contact": {"phones": [number]}, "tags": ["east"]})
    assert first.status_code == 201, first.text
    first = first.json()

    clash = rep.post("/customers", json={"kind": "person", "name": "W. Fang", "contact": {"phones": [number]}})
    body = assert_problem(clash, 409)
    assert body["candidates"][0]["id"] == first["id"]
    assert body["candidates"][0]["reasons"][0].startswith("same phone")

    # Another rep learns whose it is, not what it is.
    other = make_user("sales", team_id="west")
    hidden = assert_problem(other.post("/customers", json={"kind": "person", "name": "W",
                                                           "contact": {"phones": [number]}}), 409)
    assert hidden["candidates"] == [{"id": None, "name": None, "owner_id": rep.user["id"],
                                     "reasons": hidden["candidates"][0]["reasons"]}]

    second = rep.post("/customers?allow_duplicate=true", json={
        "kind": "person", "name": "Wang  FANG", "company": {"name": name.upper()},
        "contact": {"emails": ["wf@sino.example"]}, "tags": ["vip"], "notes": "met at the fair"})
    assert second.status_code == 201, second.text
    second = second.json()
    duplicates = rep.get(f"/customers/{first['id']}/duplicates").json()["items"]
    assert [(d["id"], d["reasons"]) for d in duplicates] == [(second["id"], ["same name and company"])]

    total_before = summary_total(admin)
    merged = rep.post(f"/customers/{first['id']}/merge",
                      json={"source_id": second["id"], "take_from_source": ["notes"]})
    assert merged.status_code == 200, merged.text
    merged = merged.json()
    assert merged["tags"] == ["east", "vip"] and merged["notes"] == "met at the fair"
    assert merged["contact"]["emails"] == ["wf@sino.example"] and merged["name"] == "Wang Fang"
    assert rep.get(f"/customers/{second['id']}").status_code == 404
    assert admin.get(f"/customers/{second['id']}", params={"include_deleted": "true"}).json()["merged_into_id"] \
        == first["id"]
    assert rep.get(f"/customers/{first['id']}/history").json()["items"][0]["action"] == "merged"
    # Reporting hears the source went away.
    wait_until(lambda: summary_total(admin) == total_before - 1, 30, message="reporting to drop the merged source")
    assert_problem(rep.post(f"/customers/{first['id']}/merge", json={"source_id": first["id"]}), 422, "source_id")


def test_delete_and_restore(system, admin, make_user):
    rep = make_user("sales")
    created = rep.post("/customers", json={"kind": "company", "name": unique("Comeback")}).json()
    assert rep.delete(f"/customers/{created['id']}").status_code == 204
    assert rep.get(f"/customers/{created['id']}").status_code == 404
    assert_problem(rep.get("/customers", params={"include_deleted": "true"}), 403)
    listed = admin.get("/customers", params={"include_deleted": "true", "q": created["name"]}).json()["items"]
    assert [c["id"] for c in listed] == [created["id"]] and listed[0]["deleted_at"]

    restored = rep.post(f"/customers/{created['id']}/restore")
    assert restored.status_code == 200, restored.text
    assert restored.json()["deleted_at"] is None
    assert rep.get(f"/customers/{created['id']}").status_code == 200
    assert_problem(rep.post(f"/customers/{created['id']}/restore"), 409)


def test_assignment_by_managers_and_admins(system, admin, make_user):
    rep = make_user("sales", team_id="north")
    colleague = make_user("sales", team_id="north")
    outsider = make_user("sales", team_id="south")
    manager = make_user("manager", team_id="north")
    viewer = make_user("viewer", team_id="north")
    created = rep.post("/customers", json={"kind": "company", "name": unique("Handover")}).json()

    assert_problem(rep.post(f"/customers/{created['id']}/assign", json={"owner_id": colleague.user["id"]}), 403)
    assigned = manager.post(f"/customers/{created['id']}/assign", json={"owner_id": colleague.user["id"]})
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["owner_id"] == colleague.user["id"]
    assert rep.get(f"/customers/{created['id']}").status_code == 404
    assert colleague.get(f"/customers/{created['id']}").status_code == 200
    wait_until(lambda: any(n["data"].get("customer_id") == created["id"]
                           for n in colleague.get("/notifications").json()["items"]),
               30, message="the new owner's notification")

    assert_problem(manager.post(f"/customers/{created['id']}/assign", json={"owner_id": outsider.user["id"]}),
                   422, "owner_id")
    assert_problem(admin.post(f"/customers/{created['id']}/assign", json={"owner_id": viewer.user["id"]}),
                   422, "owner_id")
    assert_problem(admin.post(f"/customers/{created['id']}/assign", json={"owner_id": "nobody"}), 422, "owner_id")

    batch = [rep.post("/customers", json={"kind": "company", "name": unique("Batch")}).json()["id"]
             for _ in range(3)]
    moved = admin.post("/customers/bulk-assign", json={"customer_ids": batch, "owner_id": outsider.user["id"]})
    assert moved.status_code == 200, moved.text
    assert {c["owner_id"] for c in moved.json()["items"]} == {outsider.user["id"]}
    assert sorted(c["id"] for c in outsider.get("/customers").json()["items"]) == sorted(batch)
    assert_problem(admin.post("/customers/bulk-assign", json={"customer_ids": [], "owner_id": rep.user["id"]}),
                   422, "customer_ids")


def test_custom_fields_are_defined_by_admins_and_enforced(system, admin, make_user):
    rep = make_user("sales")
    key = f"segment_{secrets.token_hex(2)}"
    defined = admin.post("/customer-fields", json={"key": key, "label": "Segment", "type": "choice",
                                                    "choices": ["smb", "enterprise"]})
    assert defined.status_code == 201, defined.text
    assert key in [f["key"] for f in rep.get("/customer-fields").json()["items"]]
    assert_problem(rep.post("/customer-fields", json={"key": "mine", "label": "Mine", "type": "text"}), 403)
    assert_problem(admin.post("/customer-fields", json={"key": key, "label": "Again", "type": "text"}), 409)

    good = rep.post("/customers", json={"kind": "company", "name": unique("Segmented"),
                                        "custom_fields": {key: "smb"}})
    assert good.status_code == 201, good.text
    assert good.json()["custom_fields"] == {key: "smb"}
    assert_problem(rep.post("/customers", json={"kind": "company", "name": unique("Badly segmented"),
                                                "custom_fields": {key: "galactic"}}), 422, f"custom_fields.{key}")


def test_roles_limit_what_each_user_sees_and_does(system, make_user):
    rep = make_user("sales")
    other = make_user("sales")
    viewer = make_user("viewer")
    created = rep.post("/customers", json={"kind": "company", "name": unique("Private")}).json()
    assert_problem(other.get(f"/customers/{created['id']}"), 404)
    assert_problem(other.patch(f"/customers/{created['id']}", json={"tier": "A"}), 404)
    assert_problem(other.get(f"/customers/{created['id']}/history"), 404)
    assert viewer.get(f"/customers/{created['id']}").status_code == 200
    assert_problem(viewer.post("/customers", json={"kind": "company", "name": "No"}), 403)
    assert_problem(viewer.delete(f"/customers/{created['id']}"), 403)
