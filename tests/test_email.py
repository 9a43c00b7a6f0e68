"""Email end to end: a user assigned a customer gets an email at their address, in their language,
through the real notifications service and a real SMTP server (system.smtp, aiosmtpd)."""
import secrets

from api_helpers import unique
from conftest import login, wait_until

PASSWORD = "a long enough password"
# Deliveries are scanned every few seconds (CRM_REMINDER_SCAN_SECONDS): allow several scans.
ARRIVAL = 30


def make_rep(system, admin, language=None):
    email = f"mail-{secrets.token_hex(3)}@e2e.example"
    body = {"email": email, "name": "王丽" if language == "zh-CN" else "Mary Major", "role": "sales",
            "team_id": "mail", "password": PASSWORD}
    if language:
        body["language"] = language
    created = admin.post("/users", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["language"] == (language or "en")
    api = login(system, email, PASSWORD)
    api.user = created.json()
    return api


def assign_customer(admin, rep, name):
    customer = admin.post("/customers", json={"kind": "company", "name": unique(name)}).json()
    assigned = admin.post(f"/customers/{customer['id']}/assign", json={"owner_id": rep.user["id"]})
    assert assigned.status_code == 200, assigned.text
    return customer


def emails_about(system, address, customer):
    """Every email about ``customer`` to ``address`` that has arrived so far."""
    return [message for message in system.smtp.messages_to(address) if customer["name"] in message["Subject"]]


def arrived(system, address, customer):
    """Waits until an email about ``customer`` has arrived at ``address``."""
    wait_until(lambda: emails_about(system, address, customer), ARRIVAL, interval=0.2,
               message=f"an email about {customer['name']}")


def the_email_about(system, admin, rep, customer):
    """The one email to ``rep`` about ``customer``, checked to have been delivered exactly once.

    A duplicate may arrive after the first copy, so counting at the first
    arrival proves nothing. Instead, later emails to the same user are awaited
    as a barrier, then every copy is counted. Deliveries go out oldest first,
    scan after scan: a copy sent in the same scan as the first is out before
    the first later email; a copy sent again on a retry waits a retry delay
    (CRM_DELIVERY_RETRY_SECONDS, one scan in the tests), so it is out before
    a second later email assigned once the first later one has arrived.
    """
    address = rep.user["email"]
    arrived(system, address, customer)
    for _ in range(2):
        arrived(system, address, assign_customer(admin, rep, "Later Assignment"))
    copies = emails_about(system, address, customer)
    assert len(copies) == 1, f"{len(copies)} emails about {customer['name']}, not one"
    return copies[0]


def test_an_english_user_gets_an_english_email_about_a_customer_assigned_to_them(system, admin):
    rep = make_rep(system, admin)
    customer = assign_customer(admin, rep, "Harbour Trading")
    message = the_email_about(system, admin, rep, customer)
    assert message["Subject"] == f"Customer {customer['name']} was assigned to you"
    assert message["To"].addresses[0].display_name == "Mary Major"
    text = message.get_body(("plain",)).get_content()
    assert text.startswith("Hello Mary Major,")
    # The email and the inbox item are one notification.
    inbox = rep.get("/notifications").json()["items"]
    assert message["X-CRM-Notification-Id"] in {item["id"] for item in inbox}


def test_a_chinese_user_gets_a_chinese_email_and_switching_language_switches_it(system, admin):
    rep = make_rep(system, admin, language="zh-CN")
    first = assign_customer(admin, rep, "云帆科技")
    message = the_email_about(system, admin, rep, first)
    assert message["Subject"] == f"客户 {first['name']} 已分配给您"
    assert message.get_body(("plain",)).get_content().startswith("王丽，您好：")

    switched = rep.patch("/me", json={"language": "en"})
    assert switched.status_code == 200, switched.text
    assert switched.json()["language"] == "en" and rep.get("/me").json()["language"] == "en"
    second = assign_customer(admin, rep, "Blue River")
    message = the_email_about(system, admin, rep, second)
    assert message["Subject"] == f"Customer {second['name']} was assigned to you"


def failed_email_sends(system):
    log = (system.workdir / "notifications.log").read_text(errors="replace")
    return log.count("email delivery")


def test_with_the_smtp_server_down_the_email_is_retried_and_arrives_once_it_is_back(system, admin):
    rep = make_rep(system, admin)
    failures_before = failed_email_sends(system)
    system.smtp.stop()
    try:
        customer = assign_customer(admin, rep, "Stormy Weather")
        # The notifications service tried, failed and logged it; the inbox has the notification meanwhile.
        wait_until(lambda: failed_email_sends(system) > failures_before, ARRIVAL, interval=0.2,
                   message="a failed email delivery")
        assert any(item["data"].get("customer_id") == customer["id"]
                   for item in rep.get("/notifications").json()["items"])
        assert system.smtp.messages_to(rep.user["email"]) == []
    finally:
        system.smtp.start()
    # Delivered once, not once per attempt.
    message = the_email_about(system, admin, rep, customer)
    assert message["Subject"] == f"Customer {customer['name']} was assigned to you"
