"""Dispatch: inbox always, other channels by preference, retries with backoff, quiet hours, preferences."""
from datetime import datetime, timedelta, timezone

import pytest
from nameko.testing.services import worker_factory

from crm_common.errors import ValidationFailed
from crm_common.testing_cast import ALICE, BOB

from notifications.dispatch import MAX_ATTEMPTS, deliver_due, notify, retry_delay
from notifications.domain import Inbox
from notifications.models import Delivery, Recipient
from notifications.preferences import Preferences, quiet_until
from notifications.service import NotificationsService

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)  # 17:00 in Shanghai
NIGHT = {"start": "22:00", "end": "07:00", "timezone": "Asia/Shanghai"}


class FakeChannel:
    """Records what it was asked to send; fails the first ``failures`` times."""

    name = "email"

    def __init__(self, failures=0):
        self.failures = failures
        self.sent = []

    def send(self, session, notification, recipient):
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError("SMTP server not answering")
        self.sent.append((notification.title, recipient.email))


@pytest.fixture
def alice_reachable(session):
    session.add(Recipient(user_id=ALICE, email="alice@example.com", name="Alice", language="en", version=1))
    session.flush()


def deliveries(session):
    return session.query(Delivery).order_by(Delivery.created_at, Delivery.channel).all()


def test_a_reminder_goes_to_the_inbox_and_by_email_by_default(session, as_alice, alice_reachable):
    notification = notify(session, ALICE, "task.reminder", "Reminder: Call Acme", now=T0)
    assert Inbox(session, as_alice).unread_count() == 1
    [delivery] = deliveries(session)
    assert (delivery.notification_id, delivery.channel, delivery.status, delivery.next_attempt_at) == \
        (notification.id, "email", "pending", T0)
    email = FakeChannel()
    assert deliver_due(session, now=T0, registry={"email": email})["sent"] == 1
    assert email.sent == [("Reminder: Call Acme", "alice@example.com")]
    assert (delivery.status, delivery.attempts, delivery.delivered_at) == ("sent", 1, T0)
    assert deliver_due(session, now=T0 + timedelta(hours=1), registry={"email": email})["sent"] == 0
    assert len(email.sent) == 1


def test_other_types_stay_in_the_inbox_unless_chosen(session, as_alice, alice_reachable):
    notify(session, ALICE, "customer.imported", "3 imported customers", now=T0)
    assert deliveries(session) == []
    Preferences(session, as_alice).put({"channels": {"customer.imported": ["inbox", "email"],
                                                     "task.reminder": ["inbox"]}})
    notify(session, ALICE, "customer.imported", "2 imported customers", now=T0)
    notify(session, ALICE, "task.reminder", "Reminder: quiet please", now=T0)
    assert [d.channel for d in deliveries(session)] == ["email"]
    assert Inbox(session, as_alice).unread_count() == 3


def test_failures_back_off_1_5_30_120_minutes_then_give_up_after_six_attempts(session, alice_reachable):
    notify(session, ALICE, "task.reminder", "Reminder: Call Acme", now=T0)
    email = FakeChannel(failures=100)
    now, waits = T0, []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert deliver_due(session, now=now, registry={"email": email})["failed" if attempt == MAX_ATTEMPTS
                                                                        else "retrying"] == 1
        [delivery] = deliveries(session)
        assert delivery.attempts == attempt
        assert "SMTP server not answering" in delivery.last_error
        if delivery.status == "failed":
            break
        # Not before its time ...
        assert deliver_due(session, now=delivery.next_attempt_at - timedelta(seconds=1),
                           registry={"email": email}) == dict.fromkeys(
            ("sent", "failed", "retrying", "skipped", "deferred"), 0)
        waits.append(delivery.next_attempt_at - now)
        now = delivery.next_attempt_at
    assert waits == [timedelta(minutes=m) for m in (1, 5, 30, 120, 120)]
    assert delivery.status == "failed" and delivery.attempts == MAX_ATTEMPTS
    assert retry_delay(MAX_ATTEMPTS) is None


def test_a_failure_then_success_is_one_delivery_and_other_deliveries_go_on(session, as_bob):
    session.add_all([
        Recipient(user_id=ALICE, email="alice@example.com", version=1),
        Recipient(user_id=BOB, email="bob@example.com", version=1),
    ])
    notify(session, ALICE, "task.reminder", "Reminder: for Alice", now=T0)
    notify(session, BOB, "task.reminder", "Reminder: for Bob", now=T0)

    class FailsForAlice(FakeChannel):
        def send(self, session, notification, recipient):
            if recipient.email.startswith("alice") and not self.sent_alice_once:
                self.sent_alice_once = True
                raise TimeoutError("timed out")
            super().send(session, notification, recipient)

    email = FailsForAlice()
    email.sent_alice_once = False
    counts = deliver_due(session, now=T0, registry={"email": email})
    assert (counts["sent"], counts["retrying"]) == (1, 1)
    assert email.sent == [("Reminder: for Bob", "bob@example.com")]
    deliver_due(session, now=T0 + timedelta(minutes=1), registry={"email": email})
    assert sorted(email.sent) == [("Reminder: for Alice", "alice@example.com"), ("Reminder: for Bob", "bob@example.com")]
    assert [d.status for d in deliveries(session)] == ["sent", "sent"]


def test_without_an_email_address_the_email_is_skipped_saying_why(session, as_alice):
    session.add(Recipient(user_id=BOB, email=None, version=1))
    notify(session, BOB, "task.reminder", "Reminder: no address", now=T0)
    email = FakeChannel()
    assert deliver_due(session, now=T0, registry={"email": email})["skipped"] == 1
    assert email.sent == []
    assert [d.last_error for d in deliveries(session)] == ["The user has no email address."]


def test_a_user_not_known_yet_is_retried_and_mailed_once_known(session, as_alice):
    notify(session, ALICE, "task.reminder", "Reminder: early bird", now=T0)
    email = FakeChannel()
    assert deliver_due(session, now=T0, registry={"email": email})["retrying"] == 1
    [delivery] = deliveries(session)
    assert delivery.status == "pending" and "not known" in delivery.last_error
    session.add(Recipient(user_id=ALICE, email="alice@example.com", version=1))
    session.commit()
    assert deliver_due(session, now=T0 + timedelta(hours=1), registry={"email": email})["sent"] == 1
    assert email.sent == [("Reminder: early bird", "alice@example.com")]
    assert Inbox(session, as_alice).unread_count() == 1


def test_a_delivery_claimed_by_another_instance_is_left_alone(session, alice_reachable):
    notify(session, ALICE, "task.reminder", "Reminder: Call Acme", now=T0)
    [delivery] = deliveries(session)
    delivery.claimed_until = T0 + timedelta(minutes=2)
    session.commit()
    email = FakeChannel()
    deliver_due(session, now=T0 + timedelta(minutes=1), registry={"email": email})
    assert email.sent == []
    deliver_due(session, now=T0 + timedelta(minutes=3), registry={"email": email})  # the claimer died
    assert len(email.sent) == 1


def test_email_waits_for_the_end_of_quiet_hours_the_inbox_does_not(session, as_alice, alice_reachable):
    Preferences(session, as_alice).put({"quiet_hours": NIGHT})
    late = datetime(2026, 3, 2, 15, 30, tzinfo=timezone.utc)  # 23:30 in Shanghai
    notify(session, ALICE, "task.reminder", "Reminder: late one", now=late)
    assert Inbox(session, as_alice).unread_count() == 1
    [delivery] = deliveries(session)
    morning = datetime(2026, 3, 2, 23, 0, tzinfo=timezone.utc)  # 07:00 on the 3rd in Shanghai
    assert delivery.next_attempt_at == morning
    email = FakeChannel()
    deliver_due(session, now=morning - timedelta(minutes=1), registry={"email": email})
    assert email.sent == []
    deliver_due(session, now=morning, registry={"email": email})
    assert email.sent == [("Reminder: late one", "alice@example.com")]


def test_a_retry_falling_into_quiet_hours_waits_without_counting_an_attempt(session, as_alice, alice_reachable):
    notify(session, ALICE, "task.reminder", "Reminder: Call Acme", now=T0)
    Preferences(session, as_alice).put({"quiet_hours": {"start": "16:00", "end": "18:00",
                                                        "timezone": "Asia/Shanghai"}})
    email = FakeChannel()
    assert deliver_due(session, now=T0, registry={"email": email})["deferred"] == 1
    [delivery] = deliveries(session)
    assert (delivery.attempts, delivery.next_attempt_at, delivery.claimed_until) == \
        (0, datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc), None)


@pytest.mark.parametrize("local, ends", [
    ("21:59", None), ("22:00", "07:00+1"), ("23:59", "07:00+1"), ("00:00", "07:00"), ("06:59", "07:00"),
    ("07:00", None), ("12:00", None),
])
def test_quiet_hours_over_midnight(local, ends):
    zone = timezone(timedelta(hours=8))
    day = datetime(2026, 3, 2, tzinfo=zone)
    hours, minutes = map(int, local.split(":"))
    now = day.replace(hour=hours, minute=minutes).astimezone(timezone.utc)
    expected = None
    if ends:
        expected = (day + timedelta(days=1 if ends.endswith("+1") else 0)).replace(hour=7).astimezone(timezone.utc)
    assert quiet_until(NIGHT, now) == expected


def test_preferences_read_back_with_defaults(session, as_alice, as_bob):
    alice = worker_factory(NotificationsService, db=session, context=as_alice)
    fresh = alice.get_preferences()
    assert fresh["channels"]["task.reminder"] == ["inbox", "email"]
    assert fresh["quiet_hours"] is None
    saved = alice.put_preferences({"channels": {"contract.expiring": ["email", "inbox", "email"]},
                                   "quiet_hours": NIGHT})
    assert saved["channels"]["contract.expiring"] == ["inbox", "email"]
    assert saved["quiet_hours"] == NIGHT
    assert alice.get_preferences() == saved
    # Bob's are his own.
    assert Preferences(session, as_bob).get()["quiet_hours"] is None


@pytest.mark.parametrize("body, field", [
    ({"channels": {"task.reminder": ["email"]}}, "channels"),
    ({"channels": {"task.reminder": ["inbox", "sms"]}}, "channels"),
    ({"channels": {"task.reminder": "inbox"}}, "channels"),
    ({"quiet_hours": {"start": "22:00", "end": "7:00", "timezone": "Asia/Shanghai"}}, "quiet_hours"),
    ({"quiet_hours": {"start": "24:00", "end": "07:00", "timezone": "Asia/Shanghai"}}, "quiet_hours"),
    ({"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}}, "quiet_hours"),
    ({"quiet_hours": {"start": "22:00", "end": "07:00"}}, "quiet_hours"),
    ({"quiet_hours": {"start": "22:00", "end": "22:00", "timezone": "UTC"}}, "quiet_hours"),
    ({"sounds": True}, "sounds"),
])
def test_bad_preferences_name_the_field(session, as_alice, body, field):
    with pytest.raises(ValidationFailed) as refused:
        Preferences(session, as_alice).put(body)
    assert field in refused.value.errors


def test_the_inbox_cannot_be_turned_off_says_so(session, as_alice):
    with pytest.raises(ValidationFailed) as refused:
        Preferences(session, as_alice).put({"channels": {"task.reminder": ["email"]}})
    assert refused.value.errors["channels"]["task.reminder"]["value"] == ["The inbox cannot be turned off."]
