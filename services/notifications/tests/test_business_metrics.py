"""The notifications service's business counters move when the fact commits, and only then."""
from datetime import timedelta

from prometheus_client import REGISTRY

from crm_common.testing_cast import ALICE, as_admin  # noqa: F401
from notifications.dispatch import deliver_due, notify
from notifications.reminders import send_due_reminders

# Helpers and fixtures of the domain tests, reused here.
from test_dispatch import T0, FakeChannel, alice_reachable  # noqa: F401
from test_reminders import make_task
from test_webhooks import T0 as WEBHOOK_T0, Receiver, admin_worker, event, hook, public_dns, scan, sessions  # noqa: F401


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0


def test_notifications_count_the_inbox_and_each_channel_outcome(session, alice_reachable):  # noqa: F811
    inbox, email_retrying, email_sent = (sample("crm_notifications_sent_total", channel=c, outcome=o)
                                         for c, o in (("inbox", "sent"), ("email", "retrying"), ("email", "sent")))
    session.commit()  # Alice's address
    notify(session, ALICE, "task.reminder", "Rolled back", now=T0)
    session.rollback()
    assert sample("crm_notifications_sent_total", channel="inbox", outcome="sent") == inbox
    notify(session, ALICE, "task.reminder", "Reminder: Call Acme", now=T0)
    session.commit()
    assert sample("crm_notifications_sent_total", channel="inbox", outcome="sent") == inbox + 1
    email = FakeChannel(failures=1)
    deliver_due(session, now=T0, registry={"email": email})
    assert sample("crm_notifications_sent_total", channel="email", outcome="retrying") == email_retrying + 1
    deliver_due(session, now=T0 + timedelta(hours=1), registry={"email": email})
    assert sample("crm_notifications_sent_total", channel="email", outcome="sent") == email_sent + 1


def test_reminders_sent(session, as_alice):
    make_task(session, as_alice, "Call Acme", T0)
    before = sample("crm_reminders_sent_total")
    assert len(send_due_reminders(session, "i-1", now=T0)) == 1
    assert sample("crm_reminders_sent_total") == before + 1


def test_webhook_deliveries_by_outcome(admin_worker, sessions):  # noqa: F811
    retrying, succeeded = (sample("crm_webhook_deliveries_total", outcome=o) for o in ("retrying", "succeeded"))
    hook(admin_worker)
    admin_worker.on_customers_event_for_webhooks(event())
    assert scan(sessions, Receiver(503), WEBHOOK_T0) == ["pending"]
    assert sample("crm_webhook_deliveries_total", outcome="retrying") == retrying + 1
    assert scan(sessions, Receiver(204), WEBHOOK_T0 + timedelta(hours=1)) == ["succeeded"]
    assert sample("crm_webhook_deliveries_total", outcome="succeeded") == succeeded + 1
