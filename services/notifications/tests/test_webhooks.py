"""Outbound webhooks: subscriptions, matching, signing, claiming, retries with backoff, SSRF at send time."""
import hashlib
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests
from nameko.testing.services import worker_factory

from alembic import command
from sqlalchemy import text

from crm_common import crypto
from crm_common.db import make_engine, make_session_factory
from crm_common.migrate import alembic_config, upgrade
from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed, VersionMismatch
from crm_common.testing_cast import as_admin  # noqa: F401

from notifications import webhooks
from notifications.models import WebhookDelivery
from notifications.service import NotificationsService

# A fixed "now" a little after the real one (deliveries are made due at the real now).
T0 = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=1)
PUBLIC = "93.184.216.34"
SECRET = "s3cret-shared-with-the-receiver"


@pytest.fixture(autouse=True)
def public_dns(monkeypatch):
    """Every host resolves to a public address unless a test says otherwise; no real DNS in unit tests."""
    answers = {}
    monkeypatch.setattr("notifications.ssrf.system_resolver", lambda host, port: answers.get(host, [PUBLIC]))
    return answers


@pytest.fixture
def admin_worker(session, as_admin):  # noqa: F811
    return worker_factory(NotificationsService, db=session, context=as_admin)


@pytest.fixture
def sessions(session):
    return make_session_factory(session.get_bind())


def event(event_type="customer.created", **data):
    return {"event_id": str(uuid.uuid4()), "type": event_type, "version": 1, "occurred_at": T0.isoformat(),
            "producer": event_type.split(".")[0], "actor": {"user_id": None, "role": "admin", "team_id": None},
            "request_id": "r-1", "data": data or {"id": str(uuid.uuid4()), "name": "Acme 上海"}}


def hook(worker, **fields):
    return worker.create_webhook({"url": "https://hooks.example.com/crm", "event_types": ["customer.created"],
                                  "secret": SECRET, **fields})


class Receiver:
    """A stand-in for requests.post: answers each POST with the next status (or raises an exception)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests = []

    def __call__(self, url, data, headers, **options):
        self.requests.append({"url": url, "body": data, "headers": headers, "options": options})
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return FakeResponse(answer)


class FakeResponse:
    def __init__(self, status_code):
        self.status_code = status_code

    def close(self):
        pass


def deliveries_of(worker, webhook_id):
    """GET /webhooks/{id}/deliveries, after what the scan committed in its own sessions."""
    worker.db.expire_all()
    return worker.list_webhook_deliveries(webhook_id)["items"]


def scan(sessions, receiver, now, **options):
    return webhooks.deliver_due(sessions, clock=lambda: now, send=receiver, rand=lambda: 0.5,
                                backoff_base=30.0, **options)


# --- the rules --------------------------------------------------------------------

@pytest.mark.parametrize("patterns, event_type, wanted", [
    (["order.placed"], "order.placed", True),
    (["order.placed"], "order.paid", False),
    (["order.*"], "order.paid", True),
    (["order.*"], "orders.paid", False),
    (["order.*"], "order", False),
    (["*"], "contract.expiring", True),
    (["customer.created", "contract.*"], "contract.signed", True),
    (["customer.created", "contract.*"], "customer.updated", False),
    ([], "customer.created", False),
])
def test_event_type_matching(patterns, event_type, wanted):
    assert webhooks.event_matches(patterns, event_type) is wanted


def _independent_hmac_sha256(key, message):
    # RFC 2104 spelled out with hashlib alone, so the check does not reuse the code under test.
    block = 64
    key = key.ljust(block, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key) + message).digest()
    return hashlib.sha256(bytes(b ^ 0x5C for b in key) + inner).hexdigest()


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = json.dumps({"type": "order.placed", "data": {"名称": "订单"}}, ensure_ascii=False).encode()
    expected = "sha256=" + _independent_hmac_sha256(SECRET.encode(), b"1767225600." + body)
    assert webhooks.signature(SECRET, 1767225600, body) == expected
    assert webhooks.signature(SECRET, 1767225601, body) != expected  # the timestamp is signed too


def test_backoff_doubles_from_the_base_with_bounded_jitter_and_is_capped():
    assert [webhooks.backoff_seconds(n, 30, lambda: 0.5) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert webhooks.backoff_seconds(20, 30, lambda: 0.5) == 3600
    assert webhooks.backoff_seconds(1, 30, lambda: 0.0) == pytest.approx(24)
    assert webhooks.backoff_seconds(1, 30, lambda: 0.999999) == pytest.approx(36, abs=0.001)


# --- subscriptions ------------------------------------------------------------------

def test_secret_is_shown_once_then_only_its_hint(admin_worker):
    created = hook(admin_worker, secret=None)
    generated = created["secret"]
    assert generated.startswith("whsec_") and len(generated) > 40
    shown = admin_worker.get_webhook(created["id"])
    assert "secret" not in shown
    assert shown["secret_hint"] == "…" + generated[-4:]
    assert [item["id"] for item in admin_worker.list_webhooks()["items"]] == [created["id"]]
    given = hook(admin_worker)
    assert given["secret"] == SECRET and given["secret_hint"] == "…iver"


def test_only_admins_manage_webhooks(session, as_alice):
    alice = worker_factory(NotificationsService, db=session, context=as_alice)
    with pytest.raises(Forbidden):
        hook(alice)
    with pytest.raises(Forbidden):
        alice.list_webhooks()


@pytest.mark.parametrize("url, message", [
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("https://metadata.internal/", "link-local"),
    ("ftp://hooks.example.com/", "Only http and https"),
    ("https://me:pw@hooks.example.com/", "credentials"),
])
def test_unsafe_urls_are_refused_naming_url(admin_worker, public_dns, url, message):
    public_dns["127.0.0.1"] = ["127.0.0.1"]
    public_dns["metadata.internal"] = ["169.254.169.254"]
    with pytest.raises(ValidationFailed) as refused:
        hook(admin_worker, url=url)
    assert message in refused.value.errors["url"][0]


def test_private_url_is_allowed_when_the_admin_says_so_and_rechecked_when_that_changes(admin_worker, public_dns):
    public_dns["intranet.local"] = ["10.0.0.7"]
    created = hook(admin_worker, url="http://intranet.local/hook", allow_private_network=True)
    with pytest.raises(ValidationFailed) as refused:
        admin_worker.update_webhook(created["id"], {"allow_private_network": False})
    assert "10.0.0.7" in refused.value.errors["url"][0]


@pytest.mark.parametrize("fields, field", [
    ({"event_types": []}, "event_types"),
    ({"event_types": ["Order Placed"]}, "event_types"),
    ({"event_types": ["order.*.paid"]}, "event_types"),
    ({"secret": "short"}, "secret"),
    ({"colour": "red"}, "colour"),
])
def test_invalid_subscriptions_name_the_field(admin_worker, fields, field):
    with pytest.raises(ValidationFailed) as refused:
        hook(admin_worker, **fields)
    assert field in refused.value.errors


def test_patch_honours_the_version_and_delete_removes_deliveries(admin_worker, session):
    created = hook(admin_worker)
    changed = admin_worker.update_webhook(created["id"], {"active": False, "description": "ERP"}, 1)
    assert (changed["active"], changed["description"], changed["version"]) == (False, "ERP", 2)
    with pytest.raises(VersionMismatch):
        admin_worker.update_webhook(created["id"], {"active": True}, 1)
    admin_worker.update_webhook(created["id"], {"active": True}, 2)
    admin_worker.on_customers_event_for_webhooks(event())
    admin_worker.delete_webhook(created["id"])
    with pytest.raises(NotFound):
        admin_worker.get_webhook(created["id"])
    assert session.query(WebhookDelivery).count() == 0


# --- events to deliveries --------------------------------------------------------------

def test_each_matching_active_webhook_gets_one_delivery_per_event(admin_worker, session):
    exact = hook(admin_worker)
    family = hook(admin_worker, event_types=["order.*", "customer.*"])
    hook(admin_worker, event_types=["order.*"])
    hook(admin_worker, active=False)
    created = event("customer.created")
    admin_worker.on_customers_event_for_webhooks(created)
    admin_worker.on_customers_event_for_webhooks(created)  # redelivered by the broker
    admin_worker.on_sales_event_for_webhooks(event("contract.signed"))
    deliveries = session.query(WebhookDelivery).all()
    assert sorted(d.webhook_id for d in deliveries) == sorted([exact["id"], family["id"]])
    assert {d.event_id for d in deliveries} == {created["event_id"]}
    assert json.loads(deliveries[0].payload) == created


# --- sending ------------------------------------------------------------------------------

def test_a_delivery_is_posted_signed_with_the_stored_bytes(admin_worker, sessions):
    created = hook(admin_worker)
    customer_created = event()
    admin_worker.on_customers_event_for_webhooks(customer_created)
    receiver = Receiver(204)
    assert scan(sessions, receiver, T0) == ["succeeded"]
    [sent] = receiver.requests
    headers, body = sent["headers"], sent["body"]
    assert sent["url"] == "https://hooks.example.com/crm"
    assert json.loads(body) == customer_created
    assert headers["Content-Type"] == "application/json"
    assert headers["X-CRM-Event"] == "customer.created"
    assert headers["X-CRM-Timestamp"] == str(int(T0.timestamp()))
    assert headers["X-CRM-Signature"] == "sha256=" + _independent_hmac_sha256(
        SECRET.encode(), headers["X-CRM-Timestamp"].encode() + b"." + body)
    assert sent["options"]["allow_redirects"] is False
    assert sent["options"]["timeout"] == 10
    [delivery] = deliveries_of(admin_worker, created["id"])
    assert headers["X-CRM-Delivery"] == delivery["id"]
    assert delivery["status"] == "succeeded"
    assert [a["status_code"] for a in delivery["attempts"]] == [204]
    assert scan(sessions, receiver, T0 + timedelta(hours=1)) == []  # nothing is sent twice


def test_the_payload_is_encrypted_at_rest_and_posted_as_the_exact_signed_text(admin_worker, sessions, session):
    created = hook(admin_worker)
    customer_created = event(id=str(uuid.uuid4()), name="Acme 上海", phones=["+8613900001111"],
                             emails=["li.wei@acme.example"], address={"street": "88 Century Avenue"})
    admin_worker.on_customers_event_for_webhooks(customer_created)
    stored = session.execute(text("SELECT payload FROM webhook_deliveries")).scalar_one()
    assert crypto.is_encrypted(stored)
    for secret_value in ("+8613900001111", "li.wei@acme.example", "88 Century Avenue", "Acme"):
        assert secret_value not in stored
    receiver = Receiver(204)
    assert scan(sessions, receiver, T0) == ["succeeded"]
    [sent] = receiver.requests
    # The receiver gets the envelope's bytes exactly as before encryption, signed over those bytes.
    assert sent["body"] == webhooks.envelope_bytes(customer_created).encode()
    assert sent["headers"]["X-CRM-Signature"] == "sha256=" + _independent_hmac_sha256(
        SECRET.encode(), sent["headers"]["X-CRM-Timestamp"].encode() + b"." + sent["body"])


def test_migration_0003_encrypts_the_payloads_stored_before_and_its_downgrade_decrypts_them(tmp_path):
    url = f"sqlite:///{tmp_path}/n.db"
    upgrade("notifications.migrations", url, "0002")
    payload = webhooks.envelope_bytes(event(phones=["+8613900002222"]))
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO webhooks (id, url, event_types, secret, active, allow_private_network,"
                                " created_at, updated_at, version) VALUES ('w1', 'https://h.example', '[]', 's',"
                                " 1, 0, '2026-01-01', '2026-01-01', 1)"))
        connection.execute(text("INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, payload,"
                                " status, attempts, created_at) VALUES ('d1', 'w1', 'e1', 'customer.created',"
                                " :payload, 'pending', 0, '2026-01-01')"), {"payload": payload})
    upgrade("notifications.migrations", url)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT payload FROM webhook_deliveries")).scalar_one()
    assert crypto.is_encrypted(stored) and "+8613900002222" not in stored
    with make_session_factory(engine)() as orm:
        assert orm.get(WebhookDelivery, "d1").payload == payload
    downgrade("notifications.migrations", url, "0002")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT payload FROM webhook_deliveries")).scalar_one() == payload
    engine.dispose()


def test_failures_are_retried_with_doubling_waits_until_24_hours_then_failed(admin_worker, sessions, session):
    created = hook(admin_worker)
    admin_worker.on_customers_event_for_webhooks(event())
    session.query(WebhookDelivery).update({"created_at": T0, "next_attempt_at": T0})
    session.commit()
    receiver = Receiver(500, requests.ConnectionError("refused"), 302, 503)
    now, waits = T0, []
    while (statuses := scan(sessions, receiver, now)) == ["pending"]:
        upcoming = session.query(WebhookDelivery).one()
        session.refresh(upcoming)
        waits.append((upcoming.next_attempt_at - now).total_seconds())
        # Not due a second earlier.
        assert scan(sessions, receiver, upcoming.next_attempt_at - timedelta(seconds=1)) == []
        now = upcoming.next_attempt_at
    assert statuses == ["failed"]
    assert waits[:8] == [30, 60, 120, 240, 480, 960, 1920, 3600]
    assert now == T0 + timedelta(hours=24)  # the last try exactly at the end of the window
    assert set(waits[7:-1]) == {3600}
    [delivery] = deliveries_of(admin_worker, created["id"])
    assert delivery["status"] == "failed"
    assert delivery["attempt_count"] == len(receiver.requests) == len(waits) + 1
    codes = [a["status_code"] for a in delivery["attempts"]]
    assert codes[:4] == [500, None, 302, 503]
    assert "ConnectionError" in delivery["attempts"][1]["error"]
    assert all(a["duration_ms"] is not None for a in delivery["attempts"])


def test_two_instances_never_claim_the_same_delivery(admin_worker, sessions):
    hook(admin_worker)
    admin_worker.on_customers_event_for_webhooks(event())
    first = webhooks.claim_due(sessions, T0 + timedelta(minutes=1))
    assert len(first) == 1
    assert webhooks.claim_due(sessions, T0 + timedelta(minutes=1)) == []
    # A claim whose instance died runs out and the delivery is taken up again.
    assert webhooks.claim_due(sessions, T0 + timedelta(minutes=1) + webhooks.CLAIM_LEASE
                              + timedelta(seconds=1)) == first


def test_url_that_now_resolves_to_a_private_address_is_not_called(admin_worker, sessions, public_dns):
    created = hook(admin_worker)
    admin_worker.on_customers_event_for_webhooks(event())
    public_dns["hooks.example.com"] = ["192.168.0.10"]  # DNS changed after the webhook was saved
    receiver = Receiver(200)
    assert scan(sessions, receiver, T0) == ["pending"]
    assert receiver.requests == []
    [attempt] = deliveries_of(admin_worker, created["id"])[0]["attempts"]
    assert attempt["status_code"] is None and "192.168.0.10" in attempt["error"]


def test_inactive_webhook_holds_its_deliveries_and_gives_up_after_24_hours(admin_worker, sessions):
    created = hook(admin_worker)
    admin_worker.on_customers_event_for_webhooks(event())
    admin_worker.update_webhook(created["id"], {"active": False})
    receiver = Receiver(200)
    later = webhooks.utcnow() + timedelta(hours=1)
    assert scan(sessions, receiver, later) == []
    assert scan(sessions, receiver, later + timedelta(days=1)) == []
    [delivery] = deliveries_of(admin_worker, created["id"])
    assert delivery["status"] == "failed" and "inactive" in delivery["last_error"]
    assert receiver.requests == []


def test_redeliver_sends_a_delivery_again(admin_worker, sessions):
    created = hook(admin_worker)
    admin_worker.on_customers_event_for_webhooks(event())
    receiver = Receiver(200)
    later = webhooks.utcnow() + timedelta(seconds=1)
    assert scan(sessions, receiver, later) == ["succeeded"]
    [delivery] = deliveries_of(admin_worker, created["id"])
    again = admin_worker.redeliver_webhook_delivery(created["id"], delivery["id"])
    assert again["status"] == "pending"
    assert scan(sessions, receiver, later + timedelta(seconds=5)) == ["succeeded"]
    assert len(receiver.requests) == 2
    with pytest.raises(NotFound):
        admin_worker.redeliver_webhook_delivery(created["id"], str(uuid.uuid4()))
    other = hook(admin_worker)
    with pytest.raises(NotFound):  # a delivery of another webhook
        admin_worker.redeliver_webhook_delivery(other["id"], delivery["id"])


def test_delivery_being_sent_cannot_be_redelivered(admin_worker, sessions):
    created = hook(admin_worker)
    admin_worker.on_customers_event_for_webhooks(event())
    [delivery_id] = webhooks.claim_due(sessions, webhooks.utcnow() + timedelta(seconds=1))
    with pytest.raises(Conflict):
        admin_worker.redeliver_webhook_delivery(created["id"], delivery_id)


def test_deliveries_are_paged_newest_first(admin_worker):
    created = hook(admin_worker)
    events = [event() for _ in range(3)]
    for each in events:
        admin_worker.on_customers_event_for_webhooks(each)
    first = admin_worker.list_webhook_deliveries(created["id"], limit=2)
    second = admin_worker.list_webhook_deliveries(created["id"], limit=2, cursor=first["next_cursor"])
    seen = [item["event_id"] for item in first["items"] + second["items"]]
    assert sorted(seen) == sorted(each["event_id"] for each in events)
    assert second["next_cursor"] is None
    with pytest.raises(NotFound):
        admin_worker.list_webhook_deliveries(str(uuid.uuid4()))


def downgrade(package, url, revision):
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(package, url)
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
    finally:
        engine.dispose()
