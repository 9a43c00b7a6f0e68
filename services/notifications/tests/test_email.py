"""notifications.email and .templates: real messages to a real SMTP server (aiosmtpd, its own process)."""
from datetime import datetime, timedelta, timezone

import pytest

from crm_common.testing_cast import ALICE, BOB
from crm_common.testing_smtp import SmtpServer

from notifications import dispatch
from notifications.email import NOTIFICATION_ID_HEADER, EmailChannel, SmtpSettings
from notifications.models import Delivery, Notification, Recipient, Task
from notifications.templates import render

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def smtp(tmp_path):
    server = SmtpServer(tmp_path / "maildir").start()
    yield server
    server.stop()


@pytest.fixture
def smtp_env(smtp, monkeypatch):
    for name, value in smtp.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CRM_SMTP_FROM", "Acme CRM <crm@acme.example>")
    return smtp


def add_recipient(session, user_id=ALICE, email="alice@example.com", name="Alice", language="en", active=True):
    session.add(Recipient(user_id=user_id, email=email, name=name, language=language, team_id="east",
                          active=active, version=1))
    session.flush()


def assigned(session, user_id=ALICE, customer_name="Acme Ltd"):
    notification = dispatch.notify(session, user_id, "customer.assigned", f"Customer {customer_name} was assigned to you",
                                   body=f"You are now the owner of {customer_name}.",
                                   data={"customer_id": "c-1", "customer_name": customer_name}, now=T0)
    session.commit()
    return notification


def text_and_html(message):
    return (message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content())


def test_an_english_user_gets_an_english_email_with_text_html_and_tracing_headers(session, smtp_env):
    add_recipient(session)
    notification = assigned(session)
    assert dispatch.deliver_due(session, now=T0)["sent"] == 1
    [message] = smtp_env.wait_for("alice@example.com")
    assert message["Subject"] == "Customer Acme Ltd was assigned to you"
    assert message["From"] == "Acme CRM <crm@acme.example>"
    assert message["To"].addresses[0].display_name == "Alice"
    assert message[NOTIFICATION_ID_HEADER] == notification.id
    assert message["Message-ID"] == f"<{notification.id}@acme.example>"
    text, html = text_and_html(message)
    assert text.startswith("Hello Alice,") and "You are now the owner of the customer Acme Ltd." in text
    assert "<p>You are now the owner of the customer Acme Ltd.</p>" in html
    delivery = session.query(Delivery).one()
    assert (delivery.status, delivery.attempts) == ("sent", 1)


def test_a_chinese_user_gets_a_chinese_email_in_utf8_with_an_encoded_subject(session, smtp_env):
    add_recipient(session, name="王丽", language="zh-CN")
    assigned(session, customer_name="上海云帆")
    dispatch.deliver_due(session, now=T0)
    [message] = smtp_env.wait_for("alice@example.com")
    raw_subject = message.as_string().split("Subject: ", 1)[1].split("\n", 1)[0]
    assert raw_subject.startswith("=?utf-8?")  # RFC 2047: the header itself stays ASCII
    assert message["Subject"] == "客户 上海云帆 已分配给您"
    assert message["Content-Language"] == "zh-CN"
    assert message.get_body(("plain",)).get_content_charset() == "utf-8"
    text, html = text_and_html(message)
    assert text.startswith("王丽，您好：") and "您现在是客户 上海云帆 的负责人。" in text
    assert 'lang="zh-CN"' in html


def test_with_the_smtp_server_down_the_send_fails_and_is_retried_until_it_arrives(session, smtp_env):
    add_recipient(session)
    assigned(session)
    smtp_env.stop()
    assert dispatch.deliver_due(session, now=T0)["retrying"] == 1
    delivery = session.query(Delivery).one()
    assert delivery.attempts == 1 and delivery.status == "pending" and "Connection" in delivery.last_error
    smtp_env.start()
    assert dispatch.deliver_due(session, now=T0)["sent"] == 0  # not due again yet
    later = delivery.next_attempt_at + timedelta(seconds=1)
    assert dispatch.deliver_due(session, now=later)["sent"] == 1
    assert len(smtp_env.wait_for("alice@example.com")) == 1


def test_a_deactivated_user_gets_no_email(session, smtp_env):
    add_recipient(session, active=False)
    assigned(session)
    assert dispatch.deliver_due(session, now=T0)["skipped"] == 1
    assert smtp_env.messages() == []


def test_smtp_settings_come_from_the_environment_with_defaults(monkeypatch):
    for name in ("CRM_SMTP_HOST", "CRM_SMTP_PORT", "CRM_SMTP_STARTTLS", "CRM_SMTP_USERNAME", "CRM_SMTP_FROM",
                 "CRM_SMTP_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    assert SmtpSettings.from_env() == SmtpSettings("127.0.0.1", 25, False, None, None, "CRM <crm@localhost>", 10.0)
    monkeypatch.setenv("CRM_SMTP_HOST", "mail.example.com")
    monkeypatch.setenv("CRM_SMTP_PORT", "587")
    monkeypatch.setenv("CRM_SMTP_STARTTLS", "true")
    monkeypatch.setenv("CRM_SMTP_USERNAME", "crm")
    monkeypatch.setenv("CRM_SMTP_PASSWORD", "secret")
    monkeypatch.setenv("CRM_SMTP_TIMEOUT", "3")
    settings = SmtpSettings.from_env()
    assert (settings.host, settings.port, settings.starttls, settings.username, settings.password, settings.timeout) \
        == ("mail.example.com", 587, True, "crm", "secret", 3.0)


def test_starttls_and_login_are_used_when_configured(session, monkeypatch):
    calls = []

    class FakeSmtp:
        def __init__(self, host, port, timeout):
            calls.append(("connect", host, port, timeout))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            calls.append(("quit",))

        def starttls(self, context):
            calls.append(("starttls",))

        def login(self, username, password):
            calls.append(("login", username, password))

        def send_message(self, message):
            calls.append(("send", message["To"].addresses[0].addr_spec))

    monkeypatch.setattr("notifications.email.smtplib.SMTP", FakeSmtp)
    add_recipient(session)
    settings = SmtpSettings("mail.example.com", 587, True, "crm", "secret")
    EmailChannel(settings).send(session, assigned(session), session.get(Recipient, ALICE))
    assert calls == [("connect", "mail.example.com", 587, 10.0), ("starttls",), ("login", "crm", "secret"),
                     ("send", "alice@example.com"), ("quit",)]


# --- templates ----------------------------------------------------------------

def notification(type_, data, title="The title", body="The body"):
    return Notification(id="n-1", user_id=BOB, type=type_, title=title, body=body, data=data)


def reader(language, name="Bob"):
    return Recipient(user_id=BOB, email="bob@example.com", name=name, language=language, version=1)


def test_a_task_reminder_names_the_task_and_its_due_time_in_both_languages(session):
    session.add(Task(id="00000000-0000-4000-8000-000000000111", title="Call Acme", description="Ask about the renewal",
                     assignee_id=BOB))
    session.flush()
    from notifications.email import template_extras

    reminder = notification("task.reminder", {"task_id": "00000000-0000-4000-8000-000000000111",
                                              "due_at": "2026-12-01T08:30:00+00:00"})
    extras = template_extras(session, reminder)
    english, chinese = render(reminder, reader("en"), extras), render(reminder, reader("zh-CN"), extras)
    assert english.subject == "Reminder: Call Acme"
    assert "Due: 2026-12-01 08:30 UTC" in english.text and "Ask about the renewal" in english.text
    assert chinese.subject == "提醒：Call Acme" and "截止时间：2026-12-01 08:30 UTC" in chinese.text


def test_contract_expiry_and_imports_have_their_own_wording(session):
    expiring = notification("contract.expiring", {"contract_title": "Support 2026", "days_left": 7, "days_to_end": 7,
                                                  "end_date": "2026-12-07"})
    assert render(expiring, reader("en")).subject == "Contract Support 2026 ends in 7 days"
    assert render(expiring, reader("zh-CN")).subject == "合同 Support 2026 将在 7 天后到期"
    imported = notification("customer.imported", {"count": 12, "customer_ids": []})
    assert render(imported, reader("en")).subject == "12 imported customers were assigned to you"
    assert render(imported, reader("zh-CN")).subject == "导入的 12 位客户已分配给您"


def test_an_unknown_type_or_missing_data_falls_back_to_the_notifications_own_title_and_body():
    for message in (notification("order.placed", {}), notification("contract.expiring", {"days_left": 7})):
        rendered = render(message, reader("zh-CN"))
        assert rendered.subject == "The title" and "The body" in rendered.text


def test_html_is_escaped_and_a_subject_stays_on_one_line():
    rendered = render(notification("custom", {}, title="Hi\r\nBcc: evil@example.com", body="<script>x</script>"),
                      reader("en", name=None))
    assert rendered.subject == "Hi Bcc: evil@example.com"
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert rendered.text.startswith("Hello,")
