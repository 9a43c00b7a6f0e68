"""End-to-end: an integration subscribes a URL to events and receives them signed, retried until it answers.

The receiver is an HTTP server in this test process on 127.0.0.1, so its
webhooks need allow_private_network (which is what the SSRF rule is for).
The notifications service retries after 0.5 s, 1 s, ... here
(CRM_WEBHOOK_BACKOFF_BASE in crm_common.testing_system).
"""
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from api_helpers import assert_problem, unique
from conftest import wait_until
from crm_common.testing import free_port

SECRET = "e2e-webhook-secret-0123456789"


class Receiver:
    """An integration's endpoint: records every POST and answers with the next status of ``statuses``
    (the last one from then on)."""

    def __init__(self, *statuses):
        self.statuses = list(statuses) or [200]
        self.requests = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                receiver.requests.append({"headers": dict(self.headers), "body": body, "status": status,
                                          "received_at": time.time()})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/crm-events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def about(self, customer_id):
        """The POSTs of the events about one customer (other tests make customers too)."""
        return [request for request in self.requests if json.loads(request["body"])["data"].get("id") == customer_id]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def subscribe(admin):
    """Subscribe a fresh receiver; deletes the webhook and stops the receiver after the test."""
    made = []

    def make(*statuses, event_types=("customer.created",)):
        receiver = Receiver(*statuses)
        created = admin.post("/webhooks", json={"url": receiver.url, "event_types": list(event_types),
                                                "secret": SECRET, "allow_private_network": True,
                                                "description": "e2e receiver"})
        assert created.status_code == 201, created.text
        made.append((created.json()["id"], receiver))
        return created.json(), receiver

    yield make
    for webhook_id, receiver in made:
        admin.delete(f"/webhooks/{webhook_id}")
        receiver.close()


def create_customer(api):
    created = api.post("/customers", json={"kind": "company", "name": unique("Hooked Co")})
    assert created.status_code == 201, created.text
    return created.json()


def expected_signature(timestamp, body):
    return "sha256=" + hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def test_receiver_gets_a_correctly_signed_post_for_customer_created(admin, subscribe):
    webhook, receiver = subscribe()
    assert webhook["secret"] == SECRET
    customer = create_customer(admin)

    [post] = wait_until(lambda: receiver.about(customer["id"]), 15, message="the webhook POST")
    headers, body = post["headers"], post["body"]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-CRM-Event"] == "customer.created"
    assert abs(int(headers["X-CRM-Timestamp"]) - time.time()) < 60
    assert hmac.compare_digest(headers["X-CRM-Signature"], expected_signature(headers["X-CRM-Timestamp"], body))
    envelope = json.loads(body)
    assert envelope["type"] == "customer.created" and envelope["producer"] == "customers"
    assert envelope["data"]["name"] == customer["name"]

    # The secret is never shown again; the delivery is listed as succeeded.
    shown = admin.get(f"/webhooks/{webhook['id']}").json()
    assert "secret" not in shown and shown["secret_hint"] == "…" + SECRET[-4:]
    deliveries = wait_until(lambda: [d for d in admin.get(f"/webhooks/{webhook['id']}/deliveries").json()["items"]
                                     if d["status"] == "succeeded"], message="the delivery marked succeeded")
    assert deliveries[0]["id"] == headers["X-CRM-Delivery"]
    assert deliveries[0]["event_id"] == envelope["event_id"]


def test_receiver_failing_twice_gets_exactly_one_successful_delivery(admin, subscribe):
    webhook, receiver = subscribe(500, 500, 200)
    customer = create_customer(admin)

    def delivery():
        items = admin.get(f"/webhooks/{webhook['id']}/deliveries").json()["items"]
        return next((item for item in items if item["status"] != "pending"), None)

    done = wait_until(delivery, 30, message="the delivery to succeed after retries")
    assert done["status"] == "succeeded"
    assert [attempt["status_code"] for attempt in done["attempts"]] == [500, 500, 200]
    assert all(attempt["duration_ms"] is not None for attempt in done["attempts"])
    assert done["attempts"][0]["error"] == "The receiver answered HTTP 500."

    posts = receiver.about(customer["id"])
    assert [post["status"] for post in posts] == [500, 500, 200]
    assert {post["headers"]["X-CRM-Delivery"] for post in posts} == {done["id"]}
    assert len({post["body"] for post in posts}) == 1  # the same bytes every time
    # Backoff: the second retry waited longer than the first.
    first_wait = posts[1]["received_at"] - posts[0]["received_at"]
    second_wait = posts[2]["received_at"] - posts[1]["received_at"]
    assert 0.3 < first_wait < second_wait

    # A later event arriving proves the scans went on: the succeeded one was not sent again.
    later = create_customer(admin)
    wait_until(lambda: receiver.about(later["id"]), 15, message="the next event")
    assert len(receiver.about(customer["id"])) == 3


def test_webhooks_are_for_admins_and_refuse_private_urls(admin, make_user, subscribe):
    rep = make_user("sales")
    assert_problem(rep.get("/webhooks"), 403)
    refused = assert_problem(admin.post("/webhooks", json={"url": "http://127.0.0.1:9/hook",
                                                           "event_types": ["order.*"]}), 422, "url")
    assert "loopback" in refused["errors"]["url"][0]
    assert_problem(admin.post("/webhooks", json={"url": "https://hooks.example.com/", "event_types": ["Bad Type"]}),
                   422, "event_types")

    webhook, _ = subscribe(event_types=("order.*",))
    path = f"/webhooks/{webhook['id']}"
    assert_problem(admin.patch(path, json={"active": False}, headers={"If-Match": 'W/"7"'}), 412)
    changed = admin.patch(path, json={"active": False}, headers={"If-Match": admin.get(path).headers["ETag"]})
    assert changed.status_code == 200 and changed.json()["active"] is False
    assert_problem(admin.patch(path, json={"allow_private_network": False}), 422, "url")
    assert admin.delete(path).status_code == 204
    assert_problem(admin.get(path), 404)
