"""Contracts end to end: drafted, approved by the right person, signed, watched for expiry, with files."""
import hashlib
import json
import secrets
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import psycopg2

from api_helpers import assert_problem
from conftest import wait_until


def today():
    # The sales service dates its checks in UTC.
    return datetime.now(timezone.utc).date()


def new_customer(api):
    created = api.post("/customers", json={"kind": "company", "name": f"Contract Co {secrets.token_hex(3)}"})
    assert created.status_code == 201, created.text
    return created.json()["id"]


def draft(customer_id, ends_in_days=7, **overrides):
    return {"customer_id": customer_id, "title": "Maintenance 2027", "value": "88000.5", "currency": "CNY",
            "start_date": today().isoformat(), "end_date": (today() + timedelta(days=ends_in_days)).isoformat(),
            "renewal_terms": "Renews for a year unless cancelled 30 days before the end", **overrides}


def create_contract(api, body):
    """The customer reaches sales' replica a moment after it is created: until then sales answers 422."""
    def attempt():
        response = api.post("/contracts", json=body)
        if response.status_code == 422 and "customer_id" in response.json().get("errors", {}):
            return None
        return response
    response = wait_until(attempt, 15, message="the customer to reach sales")
    assert response.status_code == 201, response.text
    return response


def sales_outbox(system, event_type, contract_id):
    dsn = system.env["CRM_SALES_DB_URL"].replace("+psycopg2", "")
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT payload FROM crm_outbox WHERE event_type = %s", (event_type,))
        return [envelope for envelope in (json.loads(system.decrypt(payload)) for (payload,) in cursor.fetchall())
                if envelope["data"]["id"] == contract_id]


def test_a_contract_from_draft_through_approval_signature_and_expiry_notice(system, admin, make_user):
    rep = make_user("sales", "east")
    manager = make_user("manager", "east")
    outsider = make_user("sales", "west")
    customer_id = new_customer(rep)

    assert_problem(rep.post("/contracts", json=draft(customer_id, ends_in_days=-1)), 422, "end_date")
    created = create_contract(rep, draft(customer_id))
    contract = created.json()
    cid = contract["id"]
    assert (contract["status"], contract["value"], contract["owner_id"], contract["owner_team_id"]) == \
        ("draft", "88000.50", rep.user["id"], "east")
    assert created.headers["Location"].endswith(cid)
    assert outsider.get(f"/contracts/{cid}").status_code == 404

    edited = rep.patch(f"/contracts/{cid}", json={"title": "Maintenance 2027 (signed copy)"},
                       headers={"If-Match": created.headers["ETag"]})
    assert edited.status_code == 200, edited.text
    assert_problem(rep.patch(f"/contracts/{cid}", json={"title": "stale"},
                             headers={"If-Match": created.headers["ETag"]}), 412)

    assert rep.post(f"/contracts/{cid}/submit").json()["status"] == "pending_approval"
    assert_problem(rep.post(f"/contracts/{cid}/approve"), 403)  # the author, and a sales user
    approval = manager.post(f"/contracts/{cid}/approve")
    assert approval.status_code == 200, approval.text
    assert (approval.json()["status"], approval.json()["approved_by"]) == ("approved", manager.user["id"])

    again = assert_problem(manager.post(f"/contracts/{cid}/approve"), 409)
    assert "approved" in again["detail"] and again["allowed_actions"] == ["sign"]
    assert_problem(rep.patch(f"/contracts/{cid}", json={"title": "late change"}), 409)

    signed = rep.post(f"/contracts/{cid}/sign", json={})
    assert signed.status_code == 200, signed.text
    assert signed.json()["status"] == "active"  # it starts today
    history = rep.get(f"/contracts/{cid}/history").json()["items"]
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        ("signed", "active"), ("approved", "signed"), ("pending_approval", "approved"),
        ("draft", "pending_approval"), (None, "draft")]
    assert history[2]["changed_by"] == manager.user["id"]

    # The check on demand: admins only; the 7-day notice goes out once.
    assert_problem(rep.post("/contracts/check-expiry"), 403)
    first = admin.post("/contracts/check-expiry")
    assert first.status_code == 200, first.text
    assert {"id": cid, "days_left": 7, "end_date": contract["end_date"]} in first.json()["expiring"]
    second = admin.post("/contracts/check-expiry")
    assert cid not in [notice["id"] for notice in second.json()["expiring"]]
    assert rep.get(f"/contracts/{cid}").json()["last_expiry_notice_days"] == 7
    [notice] = sales_outbox(system, "contract.expiring", cid)
    assert (notice["data"]["days_left"], notice["data"]["customer_id"], notice["data"]["value"]) == \
        (7, customer_id, "88000.50")

    listed = manager.get("/contracts", params={"status": "active", "customer_id": customer_id}).json()["items"]
    assert [c["id"] for c in listed] == [cid]

    assert_problem(rep.post(f"/contracts/{cid}/terminate", json={}), 422, "reason")
    ended = rep.post(f"/contracts/{cid}/terminate", json={"reason": "Customer moved to a competitor"})
    assert (ended.json()["status"], ended.json()["termination_reason"]) == \
        ("terminated", "Customer moved to a competitor")
    illegal = assert_problem(rep.post(f"/contracts/{cid}/sign", json={}), 409)
    assert illegal["current_status"] == "terminated" and illegal["allowed_actions"] == []
    assert len(sales_outbox(system, "contract.terminated", cid)) == 1


def test_a_manager_does_not_approve_a_contract_they_wrote(system, admin, make_user):
    manager = make_user("manager", "east")
    customer_id = new_customer(manager)
    cid = create_contract(manager, draft(customer_id, ends_in_days=365)).json()["id"]
    manager.post(f"/contracts/{cid}/submit")
    refused = assert_problem(manager.post(f"/contracts/{cid}/approve"), 403)
    assert "wrote" in refused["detail"]
    assert admin.post(f"/contracts/{cid}/approve").json()["status"] == "approved"


def test_contract_files_are_uploaded_listed_downloaded_intact_and_kept_once_submitted(system, make_user):
    rep = make_user("sales", "east")
    customer_id = new_customer(rep)
    cid = create_contract(rep, draft(customer_id, ends_in_days=365)).json()["id"]
    scan = b"%PDF-1.7\n" + secrets.token_bytes(300_000)
    uploaded = rep.post(f"/contracts/{cid}/attachments",
                        files={"file": ("合同 扫描件.pdf", scan, "application/pdf")})
    assert uploaded.status_code == 201, uploaded.text
    attachment = uploaded.json()
    assert (attachment["size"], attachment["checksum"], attachment["content_type"]) == \
        (len(scan), hashlib.sha256(scan).hexdigest(), "application/pdf")
    assert attachment["file_name"] == "合同 扫描件.pdf"
    assert rep.get(f"/contracts/{cid}/attachments").json()["items"] == [attachment]

    download = rep.get(uploaded.headers["Location"].removeprefix("/api/v1"))
    assert download.status_code == 200
    assert download.content == scan
    assert download.headers["Content-Type"] == "application/pdf"
    assert f"filename*=UTF-8''{quote('合同 扫描件.pdf')}" in download.headers["Content-Disposition"]
    assert download.headers["Content-Disposition"].startswith("attachment;")

    assert_problem(rep.post(f"/contracts/{cid}/attachments", data={"note": "no file"}), 422, "file")
    draft_copy = rep.post(f"/contracts/{cid}/attachments", files={"file": ("draft.txt", b"v1", "text/plain")})
    assert rep.delete(f"/contracts/{cid}/attachments/{draft_copy.json()['id']}").status_code == 204
    assert [a["id"] for a in rep.get(f"/contracts/{cid}/attachments").json()["items"]] == [attachment["id"]]

    rep.post(f"/contracts/{cid}/submit")
    kept = assert_problem(rep.delete(f"/contracts/{cid}/attachments/{attachment['id']}"), 409)
    assert kept["current_status"] == "pending_approval"
    assert rep.get(uploaded.headers["Location"].removeprefix("/api/v1")).content == scan
