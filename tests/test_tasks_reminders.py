"""Tasks, reminders and the inbox end to end: over HTTP, with the real timers, on PostgreSQL."""
import secrets
from datetime import datetime, timedelta, timezone

import psycopg2

from api_helpers import assert_problem
from conftest import wait_until
from test_sales_contracts import create_contract, draft, new_customer


def iso(moment):
    return moment.isoformat()


def now():
    return datetime.now(timezone.utc)


def inbox(api):
    items, cursor = [], None
    while True:
        page = api.get("/notifications", params={"limit": 200, **({"cursor": cursor} if cursor else {})}).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def titled(api, prefix):
    return [item for item in inbox(api) if item["title"].startswith(prefix)]


def notifications_db(system, sql, params=()):
    dsn = system.env["CRM_NOTIFICATIONS_DB_URL"].replace("+psycopg2", "")
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def test_tasks_are_created_changed_closed_and_seen_by_the_right_people(system, admin, make_user):
    rep = make_user("sales", "east")
    colleague = make_user("sales", "east")
    outsider = make_user("sales", "west")
    manager = make_user("manager", "east")

    due = now() + timedelta(days=2)
    created = rep.post("/tasks", json={"title": "Send the offer to Acme", "due_at": iso(due),
                                       "remind_at": iso(due - timedelta(hours=2)), "priority": "high"})
    assert created.status_code == 201, created.text
    task = created.json()
    assert (task["assignee_id"], task["status"], task["priority"], task["source"]) == \
        (rep.user["id"], "open", "high", "manual")
    assert created.headers["Location"].endswith(f"/tasks/{task['id']}")
    assert_problem(rep.post("/tasks", json={"title": "x", "due_at": iso(due), "remind_at": iso(due + timedelta(1))}),
                   422, "remind_at")
    assert_problem(rep.post("/tasks", json={"title": "x", "assignee_id": colleague.user["id"]}), 422, "assignee_id")

    # Visibility: the assignee, their team's manager and admins; nobody else (404, as if missing).
    assert rep.get(f"/tasks/{task['id']}").headers["ETag"] == 'W/"1"'
    assert manager.get(f"/tasks/{task['id']}").status_code == 200
    assert admin.get(f"/tasks/{task['id']}").status_code == 200
    assert_problem(outsider.get(f"/tasks/{task['id']}"), 404)
    assert_problem(colleague.get(f"/tasks/{task['id']}"), 404)
    assert task["id"] not in [t["id"] for t in outsider.get("/tasks").json()["items"]]

    # A manager gives a task to a team member, not to another team.
    given = manager.post("/tasks", json={"title": "Visit Beta Co", "assignee_id": colleague.user["id"]})
    assert given.status_code == 201, given.text
    assert given.json()["assignee_team_id"] == "east"
    assert_problem(manager.post("/tasks", json={"title": "x", "assignee_id": outsider.user["id"]}), 422,
                   "assignee_id")
    mine = colleague.get("/tasks", params={"assignee": "me", "status": "open"}).json()["items"]
    assert [t["title"] for t in mine] == ["Visit Beta Co"]
    team = {t["id"] for t in manager.get("/tasks", params={"status": "open"}).json()["items"]}
    assert {task["id"], given.json()["id"]} <= team

    # PATCH with If-Match; a stale version is refused.
    changed = rep.patch(f"/tasks/{task['id']}", json={"title": "Send the revised offer"},
                        headers={"If-Match": 'W/"1"'})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["title"], changed.headers["ETag"]) == ("Send the revised offer", 'W/"2"')
    assert_problem(rep.patch(f"/tasks/{task['id']}", json={"title": "x"}, headers={"If-Match": 'W/"1"'}), 412)

    done = rep.post(f"/tasks/{task['id']}/complete")
    assert done.json()["status"] == "done" and done.json()["completed_at"]
    assert_problem(rep.post(f"/tasks/{task['id']}/cancel"), 409)
    assert rep.get("/tasks", params={"status": "done"}).json()["items"][0]["id"] == task["id"]
    assert_problem(make_user("viewer").post("/tasks", json={"title": "x"}), 403)


def test_inbox_actions_and_preferences(system, make_user):
    rep = make_user("sales", "east")
    assert rep.get("/notifications/unread-count").json() == {"unread": 0}
    prefs = rep.get("/me/notification-preferences").json()
    assert prefs["channels"]["task.reminder"] == ["inbox", "email"] and prefs["quiet_hours"] is None
    night = {"start": "22:00", "end": "07:00", "timezone": "Asia/Shanghai"}
    saved = rep.put("/me/notification-preferences", json={"channels": {"task.reminder": ["inbox"]},
                                                           "quiet_hours": night})
    assert saved.status_code == 200, saved.text
    assert rep.get("/me/notification-preferences").json()["quiet_hours"] == night
    assert_problem(rep.put("/me/notification-preferences", json={"channels": {"task.reminder": ["email"]}}),
                   422, "channels")
    bad_zone = assert_problem(rep.put("/me/notification-preferences", json={
        "quiet_hours": {**night, "timezone": "Mars/Olympus"}}, headers={"Accept-Language": "zh-CN"}),
        422, "quiet_hours")
    assert "IANA" in bad_zone["errors"]["quiet_hours"]["timezone"][0]

    # Two reminders due now reach the inbox; read one, then the rest.
    for title in ("Call Acme", "Call Beta"):
        assert rep.post("/tasks", json={"title": title, "remind_at": iso(now())}).status_code == 201
    wait_until(lambda: rep.get("/notifications/unread-count").json()["unread"] == 2, 20,
               message="two reminders in the inbox")
    first = titled(rep, "Reminder: Call")[0]
    read = rep.post(f"/notifications/{first['id']}/read")
    assert read.status_code == 200 and read.json()["read"] is True
    assert rep.get("/notifications/unread-count").json() == {"unread": 1}
    assert_problem(make_user("sales").post(f"/notifications/{first['id']}/read"), 404)
    assert rep.post("/notifications/read-all").json() == {"marked": 1}
    assert rep.get("/notifications/unread-count").json() == {"unread": 0}


def test_a_followup_due_soon_reminds_the_owner_when_the_time_comes(system, make_user):
    rep = make_user("sales", "east")
    name = f"Reminder Co {secrets.token_hex(3)}"
    customer = rep.post("/customers", json={"kind": "company", "name": name})
    assert customer.status_code == 201, customer.text
    due = now() + timedelta(seconds=4)
    logged = rep.post(f"/customers/{customer.json()['id']}/followups", json={
        "type": "call", "summary": "Asked for a quote", "next_followup_at": iso(due)})
    assert logged.status_code == 201, logged.text

    task = wait_until(lambda: next(iter(rep.get("/tasks", params={"customer_id": customer.json()["id"]})
                                        .json()["items"]), None), 15, message="the follow-up task")
    assert (task["title"], task["source"], task["source_ref"]) == \
        (f"Follow up with {name}", "followup", logged.json()["id"])
    if now() < due - timedelta(seconds=1):
        assert titled(rep, "Reminder:") == []  # not before its time

    [reminder] = wait_until(lambda: titled(rep, f"Reminder: Follow up with {name}"), 30,
                            message="the follow-up reminder")
    assert reminder["type"] == "task.reminder" and reminder["data"]["task_id"] == task["id"]
    assert datetime.fromisoformat(reminder["created_at"]) >= due
    # ... and by email (task.reminder goes to the inbox and email unless the user chose otherwise).
    mails = [mail for mail in system.smtp.wait_for(rep.user["email"], timeout=30)
             if f"Follow up with {name}" in str(mail["Subject"])]
    assert len(mails) == 1, [str(mail["Subject"]) for mail in system.smtp.messages_to(rep.user["email"])]

    # The next follow-up closes the task of this one.
    rep.post(f"/customers/{customer.json()['id']}/followups", json={"type": "visit", "summary": "Brought it"})
    wait_until(lambda: rep.get(f"/tasks/{task['id']}").json()["status"] == "done", 15,
               message="the earlier follow-up task closed")


def test_a_contract_ending_soon_gives_its_owner_a_task_and_a_notification(system, admin, make_user):
    rep = make_user("sales", "east")
    manager = make_user("manager", "east")
    customer_id = new_customer(rep)
    contract = create_contract(rep, draft(customer_id, ends_in_days=7)).json()
    cid = contract["id"]
    rep.post(f"/contracts/{cid}/submit")
    assert manager.post(f"/contracts/{cid}/approve").status_code == 200
    assert rep.post(f"/contracts/{cid}/sign", json={}).json()["status"] == "active"
    assert admin.post("/contracts/check-expiry").status_code == 200

    [notice] = wait_until(lambda: titled(rep, f"Contract {contract['title']} ends"), 20,
                          message="the expiry notification")
    assert notice["title"] == f"Contract {contract['title']} ends in 7 days"
    assert (notice["type"], notice["data"]["contract_id"]) == ("contract.expiring", cid)
    [task] = [t for t in rep.get("/tasks").json()["items"] if t["contract_id"] == cid]
    assert (task["source"], task["source_ref"], task["due_at"][:10]) == ("contract", f"{cid}:7", contract["end_date"])
    assert notice["data"]["task_id"] == task["id"]


def test_two_notifications_instances_send_each_reminder_exactly_once(system, make_user):
    rep = make_user("sales", "east")
    system.start("notifications", instance="notifications-2")
    try:
        tag = secrets.token_hex(3)
        at = iso(now() + timedelta(seconds=3))
        ids = []
        for n in range(12):
            created = rep.post("/tasks", json={"title": f"Batch {tag} #{n}", "remind_at": at})
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])

        def all_reminded():
            return all(rep.get(f"/tasks/{task_id}").json()["reminded_at"] for task_id in ids)

        wait_until(all_reminded, 40, interval=0.3, message="every task reminded")
        reminders = titled(rep, f"Reminder: Batch {tag}")
        assert sorted(item["title"] for item in reminders) == sorted(f"Reminder: Batch {tag} #{n}" for n in range(12))
        rows = notifications_db(system, "SELECT count(*) FROM notifications WHERE user_id = %s AND type = %s",
                                (rep.user["id"], "task.reminder"))
        assert rows == [(12,)]
    finally:
        system.stop("notifications-2")
