"""The audit trail end to end: what people do through the API shows up in GET /audit, for admins only,
with who, when, from where, in which request, and the changed fields with personal data masked."""
import requests

from api_helpers import assert_problem, phone, unique
from conftest import wait_until


def audit(admin, **params):
    response = admin.get("/audit", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def wait_for_entry(admin, action, **params):
    """The newest entry with this action (and filters), once it has reached the gateway."""
    found = wait_until(lambda: audit(admin, action=action, **params), 20, interval=0.2,
                       message=f"an audit entry {action} {params}")
    return found[0]


def test_changes_sign_ins_and_refusals_are_audited_and_only_admins_read_them(system, admin, make_user):
    rep = make_user("sales")
    number = phone()
    digits = number.replace(" ", "")
    created = rep.post("/customers", json={"kind": "person", "name": unique("Audit Person"),
                                           "contact": {"phones": [number]}, "tier": "B"})
    assert created.status_code == 201, created.text
    customer = created.json()
    changed = rep.patch(f"/customers/{customer['id']}", json={"tier": "A"},
                        headers={"If-Match": created.headers["ETag"]})
    assert changed.status_code == 200, changed.text
    new_number = phone()
    rephoned = rep.patch(f"/customers/{customer['id']}", json={"contact": {"phones": [new_number]}},
                         headers={"If-Match": changed.headers["ETag"]})
    assert rephoned.status_code == 200, rephoned.text
    deleted = rep.delete(f"/customers/{customer['id']}", headers={"If-Match": rephoned.headers["ETag"]})
    assert deleted.status_code == 204, deleted.text
    restored = rep.post(f"/customers/{customer['id']}/restore")
    assert restored.status_code == 200, restored.text

    other = rep.post("/customers?allow_duplicate=true", json={
        "kind": "person", "name": unique("Audit Twin"), "contact": {"emails": ["twin@audit.example"]}})
    assert other.status_code == 201, other.text
    merged = rep.post(f"/customers/{customer['id']}/merge",
                      json={"source_id": other.json()["id"], "take_from_source": []})
    assert merged.status_code == 200, merged.text
    exported = rep.get("/exports/customers", params={"format": "csv"})
    assert exported.status_code == 200, exported.text

    # A customer reaches sales by event: retry the opportunity until it is known there.
    outcome = {}

    def opportunity_created():
        response = rep.post("/opportunities", json={"customer_id": customer["id"], "title": "Audit deal",
                                                    "amount": "100.00", "currency": "CNY"})
        outcome["response"] = response
        return response.status_code == 201
    wait_until(opportunity_created, 15, interval=0.2, message="sales to know the customer")
    opportunity = outcome["response"]
    task = rep.post("/tasks", json={"title": "Call about the audit"})
    assert task.status_code == 201, task.text

    # Sign-ins: a wrong password, then a right one; a refusal; a role change.
    gateway = system.gateway_url + "/api/v1"
    failed = requests.post(gateway + "/auth/login", json={"email": "nobody-audit@e2e.example", "password": "nope"},
                           timeout=10)
    assert failed.status_code == 401 and "audit" not in failed.text.lower()
    refused = rep.get("/audit")
    assert_problem(refused, 403)
    promoted = make_user("sales")
    role_change = admin.patch(f"/users/{promoted.user['id']}", json={"role": "manager"})
    assert role_change.status_code == 200, role_change.text

    entry = wait_for_entry(admin, "customer.created", entity_id=customer["id"])
    assert entry["actor_id"] == rep.user["id"] and entry["actor_role"] == "sales"
    assert entry["request_id"] == created.headers["X-Request-ID"]
    assert entry["client_ip"] == "127.0.0.1" and entry["service"] == "customers"

    updated = [e for e in audit(admin, entity_id=customer["id"], action="customer.updated")
               if e["request_id"] == changed.headers["X-Request-ID"]]
    assert updated and updated[0]["changes"]["tier"] == {"old": "B", "new": "A"}
    phone_change = wait_until(lambda: [e for e in audit(admin, entity_id=customer["id"], action="customer.updated")
                                       if e["request_id"] == rephoned.headers["X-Request-ID"]], 20, interval=0.2,
                              message="the phone change")[0]
    masked = phone_change["changes"]["contact"]
    assert masked["old"]["phones"][0].endswith(digits[-4:]) and masked["old"]["phones"][0].startswith("*")
    assert masked["new"]["phones"][0].endswith(new_number.replace(" ", "")[-4:])

    assert wait_for_entry(admin, "customer.deleted", entity_id=customer["id"])["request_id"] == \
        deleted.headers["X-Request-ID"]
    assert wait_for_entry(admin, "customer.restored", entity_id=customer["id"])["request_id"] == \
        restored.headers["X-Request-ID"]
    merge = wait_for_entry(admin, "customer.merged", entity_id=customer["id"])
    assert merge["detail"]["source_id"] == other.json()["id"] and merge["request_id"] == merged.headers["X-Request-ID"]
    export = wait_for_entry(admin, "customer.exported", actor=rep.user["id"])
    assert export["request_id"] == exported.headers["X-Request-ID"] and export["detail"]["format"] == "csv"
    deal = wait_for_entry(admin, "opportunity.created", entity_id=opportunity.json()["id"])
    assert deal["service"] == "sales" and deal["request_id"] == opportunity.headers["X-Request-ID"]
    todo = wait_for_entry(admin, "task.created", entity_id=task.json()["id"])
    assert todo["service"] == "notifications" and todo["actor_id"] == rep.user["id"]

    login_failure = wait_for_entry(admin, "user.login_failed")
    assert login_failure["actor_id"] is None and login_failure["outcome"] == "failure"
    assert login_failure["detail"]["email"] == "n***@e2e.example"
    assert login_failure["request_id"] == failed.headers["X-Request-ID"]
    assert wait_for_entry(admin, "user.login_succeeded", actor=promoted.user["id"])["entity_id"] == \
        promoted.user["id"]
    refusal = wait_for_entry(admin, "permission.refused", actor=rep.user["id"])
    assert refusal["request_id"] == refused.headers["X-Request-ID"] and refusal["outcome"] == "refused"
    promotion = wait_for_entry(admin, "user.role_changed", entity_id=promoted.user["id"])
    assert promotion["changes"] == {"role": {"old": "sales", "new": "manager"}}
    assert promotion["request_id"] == role_change.headers["X-Request-ID"]

    # The raw phone numbers appear nowhere in the trail.
    everything = admin.get("/audit", params={"entity_id": customer["id"], "limit": 200}).text
    for raw in (digits, digits[3:], new_number.replace(" ", "")[3:]):
        assert raw not in everything

    # Filters combine; pages do not overlap and end.
    mine = audit(admin, actor=rep.user["id"], entity_type="customer")
    assert mine and all(e["actor_id"] == rep.user["id"] and e["entity_type"] == "customer" for e in mine)
    assert not audit(admin, entity_id=customer["id"], to="2000-01-01T00:00:00Z")
    assert audit(admin, entity_id=customer["id"], **{"from": "2000-01-01T00:00:00Z"})
    seen, cursor = [], None
    while True:
        page = admin.get("/audit", params={"entity_id": customer["id"], "limit": 2,
                                           **({"cursor": cursor} if cursor else {})}).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) >= 6
    assert_problem(admin.get("/audit", params={"from": "soon"}), 422, "from")

    # Nobody but an admin reads it, and nobody changes it.
    assert_problem(make_user("manager").get("/audit"), 403)
    entry_url = f"/audit/{entry['id']}"
    for method in ("put", "patch", "delete"):
        assert getattr(admin, method)(entry_url, json={}).status_code in (404, 405)
