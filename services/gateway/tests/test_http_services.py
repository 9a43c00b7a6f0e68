"""The gateway in front of the services: customers, reports and notifications
over RPC to fake services, bounded RPC (timeouts, missing services, expiry),
and readiness."""
import time
from unittest.mock import Mock

from kombu import Connection

from crm_common.rpc import BoundedRpcProxy, ForgettingReplyListener

from gateway_fakes import ALL, FakeCustomers, FakeNotifications, FakeReporting
from gateway_support import assert_problem, wait_for

RPC_TIMEOUT = 1.0  # CRM_RPC_TIMEOUT in these tests (conftest.gateway_env)


def queue_depth(amqp_uri, name):
    with Connection(amqp_uri) as connection:
        _, depth, _ = connection.default_channel.queue_declare(name, passive=True)
        return depth


def reply_listener(container):
    return next(ext for ext in container.extensions if isinstance(ext, ForgettingReplyListener))


# --- customers ---------------------------------------------------------------------

def test_customer_lifecycle_carries_context_etags_and_versions(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeCustomers)
    sales, token = gateway.create_user(admin_token, "sales", "east")

    created = gateway.post("/api/v1/customers", token=token, json={"kind": "company", "name": "Acme"},
                           headers={"X-Request-ID": "req-42", "Accept-Language": "zh-CN"})
    assert created.status_code == 201, created.text
    customer = created.json()
    assert created.headers["Location"] == f"/api/v1/customers/{customer['id']}"
    call = fake_calls[-1]
    assert call["method"] == "create_customer"
    assert call["args"] == ({"kind": "company", "name": "Acme"}, "east")
    assert {key: call["context"].get(key) for key in ("request_id", "user_id", "user_role", "team_id", "language")} == {
        "request_id": "req-42", "user_id": sales["id"], "user_role": "sales", "team_id": "east", "language": "zh-CN"}

    fetched = gateway.get(f"/api/v1/customers/{customer['id']}", token=token)
    assert fetched.json() == customer and fetched.headers["ETag"] == 'W/"1"'
    unchanged = gateway.get(f"/api/v1/customers/{customer['id']}", token=token, headers={"If-None-Match": 'W/"1"'})
    assert unchanged.status_code == 304

    patched = gateway.request("PATCH", f"/api/v1/customers/{customer['id']}", token=token,
                              json={"tier": "A"}, headers={"If-Match": 'W/"1"'})
    assert patched.status_code == 200 and patched.headers["ETag"] == 'W/"2"'
    assert fake_calls[-1]["args"] == (customer["id"], {"tier": "A"}, 1)

    stale = gateway.request("PATCH", f"/api/v1/customers/{customer['id']}", token=token,
                            json={"tier": "B"}, headers={"If-Match": "1"})
    assert_problem(stale, 412, "version_mismatch")

    listed = gateway.get("/api/v1/customers?tag=vip&limit=5&sort=-name&unknown=1", token=token).json()
    assert [c["id"] for c in listed["items"]] == [customer["id"]]
    assert fake_calls[-1]["args"] == ({"tag": ["vip"]}, 5, None, "-name")

    deleted = gateway.request("DELETE", f"/api/v1/customers/{customer['id']}", token=token,
                              headers={"If-Match": 'W/"2"'})
    assert deleted.status_code == 204 and deleted.content == b""
    assert fake_calls[-1]["args"] == (customer["id"], 2)
    assert_problem(gateway.get(f"/api/v1/customers/{customer['id']}", token=token), 404, "not_found")


def test_customer_for_another_owner_gets_the_owners_team(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeCustomers)
    owner, _ = gateway.create_user(admin_token, "sales", "west")
    response = gateway.post("/api/v1/customers", token=admin_token, json={"name": "Acme", "owner_id": owner["id"]})
    assert response.status_code == 201, response.text
    assert fake_calls[-1]["args"] == ({"name": "Acme", "owner_id": owner["id"]}, "west")


def test_unknown_owner_is_422_and_the_service_is_not_called(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeCustomers)
    response = gateway.post("/api/v1/customers", token=admin_token,
                            json={"name": "Acme", "owner_id": "00000000-0000-4000-8000-000000000000"})
    assert assert_problem(response, 422, "validation_failed")["errors"] == {"owner_id": ["Unknown user."]}
    assert "create_customer" not in fake_calls.methods()


def test_invalid_customer_is_422_from_the_service_translated_and_nothing_written(
        gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeCustomers)
    response = gateway.post("/api/v1/customers", token=admin_token, json={"kind": "person"},
                            headers={"Accept-Language": "zh-CN"})
    body = assert_problem(response, 422, "validation_failed")
    assert body["errors"] == {"name": ["缺少必填字段。"]}
    assert gateway.get("/api/v1/customers", token=admin_token).json()["items"] == []


def test_read_only_roles_may_not_write_customers(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeCustomers)
    for role in ("viewer", "support"):
        _, token = gateway.create_user(admin_token, role)
        assert_problem(gateway.post("/api/v1/customers", token=token, json={"name": "X"}), 403, "forbidden")
        assert_problem(gateway.request("DELETE", "/api/v1/customers/c-1", token=token), 403, "forbidden")
        assert gateway.get("/api/v1/customers", token=token).status_code == 200
    assert "create_customer" not in fake_calls.methods()


def test_an_unexpected_service_error_is_500_without_internals(gateway, admin_token, start_fake):
    start_fake(FakeCustomers)
    response = gateway.get("/api/v1/customers/explode", token=admin_token)
    body = assert_problem(response, 500, "internal_error")
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    assert body["request_id"] in body["detail"] or "request id" in body["detail"]


def test_a_query_the_database_cancelled_is_503_saying_it_took_too_long(gateway, admin_token, start_fake):
    start_fake(FakeCustomers)
    body = assert_problem(gateway.get("/api/v1/customers/too-slow", token=admin_token), 503, "query_timeout")
    assert body["title"] == "The query took too long" and "time limit" in body["detail"]
    chinese = gateway.get("/api/v1/customers/too-slow", token=admin_token, headers={"Accept-Language": "zh-CN"})
    assert assert_problem(chinese, 503, "query_timeout")["title"] == "查询耗时过长"


def test_reports_and_notifications_are_proxied_with_the_caller(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeReporting)
    start_fake(FakeNotifications)
    manager, token = gateway.create_user(admin_token, "manager", "east")
    assert gateway.get("/api/v1/reports/customers/summary", token=token).json() == {"total": 0}
    notes = gateway.get("/api/v1/notifications?limit=3", token=token).json()
    assert notes["items"][0]["for"] == manager["id"]
    assert fake_calls[-1]["args"] == (3, None)


# --- bounded RPC -------------------------------------------------------------------

def test_proxies_give_requests_an_expiry_equal_to_the_timeout(gateway):
    proxy_provider = next(dep for dep in gateway.container.dependencies if dep.attr_name == "customers")
    assert isinstance(proxy_provider, BoundedRpcProxy)
    assert proxy_provider.timeout == RPC_TIMEOUT
    # nameko's RpcProxy hands its options to the Publisher of every call.
    worker_ctx = Mock(container=gateway.container, context_data={})
    method_proxy = getattr(proxy_provider.get_dependency(worker_ctx)._proxy, "get_customer")
    assert method_proxy.publisher.expiration == RPC_TIMEOUT


def test_a_service_without_a_queue_is_503_at_once(gateway, admin_token):
    started = time.monotonic()
    response = gateway.get("/api/v1/customers", token=admin_token)
    elapsed = time.monotonic() - started
    body = assert_problem(response, 503, "service_unavailable")
    assert "customers" in body["detail"]
    assert elapsed < RPC_TIMEOUT  # nameko's UnknownService, not the timeout
    assert reply_listener(gateway.container).pending_replies == 0


def test_a_stopped_service_is_503_within_the_timeout_and_its_request_never_runs(
        gateway, admin_token, start_fake, fake_calls, rabbit_config):
    customers = start_fake(FakeCustomers)
    assert gateway.get("/api/v1/customers", token=admin_token).status_code == 200
    customers.stop()  # its queue stays, with nobody consuming

    started = time.monotonic()
    response = gateway.get("/api/v1/customers/c-late", token=admin_token)
    elapsed = time.monotonic() - started
    body = assert_problem(response, 503, "service_unavailable")
    assert "customers" in body["detail"]
    assert RPC_TIMEOUT <= elapsed < RPC_TIMEOUT + 1.0
    # The gateway stopped waiting, and forgot the call ...
    assert reply_listener(gateway.container).pending_replies == 0
    # ... and RabbitMQ drops the request once it expires.
    wait_for(lambda: queue_depth(rabbit_config["AMQP_URI"], "rpc-customers") == 0,
             timeout=5, message="the timed-out request to expire")

    # Back up, the service only sees what was asked after.
    fake_calls.clear()
    start_fake(FakeCustomers)
    assert_problem(gateway.get("/api/v1/customers/c-marker", token=admin_token), 404, "not_found")
    assert [call["args"] for call in fake_calls] == [("c-marker",)]


def test_timed_out_calls_leave_nothing_behind_under_concurrency(gateway, admin_token, start_fake):
    import eventlet

    start_fake(FakeCustomers).stop()
    pool = eventlet.GreenPool(8)
    statuses = list(pool.imap(
        lambda _: gateway.get("/api/v1/customers/c-x", token=admin_token).status_code, range(8)))
    assert statuses == [503] * 8
    assert reply_listener(gateway.container).pending_replies == 0


# --- readiness ---------------------------------------------------------------------

def test_ready_when_every_service_answers(gateway, start_fake):
    for service_cls in ALL:
        start_fake(service_cls)
    response = gateway.get("/ready")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "broker": "up", "services": {
        "customers": "up", "sales": "up", "notifications": "up", "reporting": "up"}}


def test_degraded_when_a_service_is_missing_or_stopped(gateway, start_fake):
    start_fake(FakeCustomers)
    start_fake(FakeReporting)
    start_fake(FakeNotifications).stop()  # a queue without a consumer: the ping times out
    started = time.monotonic()
    response = gateway.get("/ready")
    assert time.monotonic() - started < RPC_TIMEOUT + 1.0
    assert response.status_code == 503
    assert response.json() == {"status": "degraded", "broker": "up", "services": {
        "customers": "up", "sales": "down", "notifications": "down", "reporting": "up"}}


def test_broker_down_is_reported(gateway, monkeypatch):
    from gateway import service

    monkeypatch.setattr(service, "broker_is_up", lambda uri, seconds: False)
    response = gateway.get("/ready")
    assert response.status_code == 503 and response.json()["broker"] == "down"


def test_broker_check_against_a_closed_port():
    from crm_common.rpc import broker_is_up

    started = time.monotonic()
    assert not broker_is_up("amqp://guest:guest@127.0.0.1:1//", 1.0)
    assert time.monotonic() - started < 1.5
