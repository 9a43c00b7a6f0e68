"""The gateway over HTTP, running in a nameko container against RabbitMQ: auth,
users, errors, request ids, languages, metrics and documentation."""
import base64
import json
import os
import stat

import jwt
from prometheus_client import REGISTRY

from gateway_support import ADMIN_EMAIL, JWT_SECRET, assert_problem


# --- authentication --------------------------------------------------------------

def test_health_is_public(gateway):
    assert gateway.get("/health").json() == {"service": "gateway", "status": "ok"}


def test_no_token_is_401_problem(gateway):
    response = gateway.get("/api/v1/customers")
    body = assert_problem(response, 401, "unauthorized")
    assert body["title"] == "Authentication required"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_login_me_and_the_token_claims(gateway):
    tokens = gateway.login()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900 and tokens["refresh_token"]
    me = gateway.get("/api/v1/me", token=tokens["access_token"]).json()
    assert me["email"] == ADMIN_EMAIL and me["role"] == "admin"
    assert "password_hash" not in me and "password" not in me


def test_wrong_password_and_unknown_account_get_the_same_answer(gateway):
    wrong = gateway.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": "not the password"})
    unknown = gateway.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": "not the password"})
    first, second = assert_problem(wrong, 401, "unauthorized"), assert_problem(unknown, 401, "unauthorized")
    first.pop("request_id"), second.pop("request_id")
    assert first == second


def _unsigned(claims):
    def b64(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return b64({"alg": "none", "typ": "JWT"}) + "." + b64(claims) + "."


def test_tokens_with_alg_none_or_hs512_are_401(gateway, admin_token):
    claims = jwt.decode(admin_token, JWT_SECRET, algorithms=["HS256"], audience="crm-api")
    for forged in (_unsigned(claims), jwt.encode(claims, JWT_SECRET, algorithm="HS512"), "garbage"):
        assert_problem(gateway.get("/api/v1/me", token=forged), 401, "unauthorized")
    assert gateway.get("/api/v1/me", token=admin_token).status_code == 200


def test_refresh_rotates_and_reuse_revokes_the_family(gateway):
    first = gateway.login()
    second = gateway.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    second = second.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert gateway.get("/api/v1/me", token=second["access_token"]).status_code == 200

    # The first token again: someone kept a copy. Every token of this login stops working.
    reuse = gateway.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_problem(reuse, 401, "unauthorized")
    after = gateway.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert_problem(after, 401, "unauthorized")
    # A separate login is another family and still works.
    other = gateway.login()
    assert gateway.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]}).status_code == 200


# --- users and roles ---------------------------------------------------------------

def test_admin_creates_and_reads_users(gateway, admin_token):
    response = gateway.post("/api/v1/users", token=admin_token, json={
        "email": "Sam@Example.com", "name": "Sam", "role": "sales", "team_id": "east",
        "password": "a long enough password"})
    assert response.status_code == 201, response.text
    user = response.json()
    assert response.headers["Location"] == f"/api/v1/users/{user['id']}"
    assert user["email"] == "sam@example.com" and user["team_id"] == "east"
    assert not {"password", "password_hash"} & set(user)
    assert gateway.get(f"/api/v1/users/{user['id']}", token=admin_token).json() == user
    listed = gateway.get("/api/v1/users?limit=1", token=admin_token).json()
    assert len(listed["items"]) == 1 and listed["next_cursor"]
    rest = gateway.get(f"/api/v1/users?cursor={listed['next_cursor']}", token=admin_token).json()
    assert [u["email"] for u in listed["items"] + rest["items"]] == [ADMIN_EMAIL, "sam@example.com"]
    assert all("password_hash" not in u for u in rest["items"])
    assert_problem(gateway.get("/api/v1/users/00000000-0000-4000-8000-000000000000", token=admin_token),
                   404, "not_found")


def test_duplicate_email_in_another_case_is_409(gateway, admin_token):
    gateway.create_user(admin_token, "viewer", email="dup@example.com")
    response = gateway.post("/api/v1/users", token=admin_token, json={
        "email": "DUP@example.com", "name": "Dup", "role": "viewer", "password": "a long enough password"})
    assert assert_problem(response, 409, "conflict")["errors"] == {"email": ["Already in use."]}


def test_invalid_user_is_422_naming_the_fields_and_nothing_is_written(gateway, admin_token):
    before = gateway.get("/api/v1/users", token=admin_token).json()["items"]
    response = gateway.post("/api/v1/users", token=admin_token, json={
        "email": "x@example.com", "name": "X", "role": "boss", "password": "short"})
    body = assert_problem(response, 422, "validation_failed")
    assert set(body["errors"]) == {"role", "password"}
    assert gateway.get("/api/v1/users", token=admin_token).json()["items"] == before


def test_other_roles_may_not_manage_users(gateway, admin_token):
    _, sales_token = gateway.create_user(admin_token, "sales", "east")
    assert_problem(gateway.get("/api/v1/users", token=sales_token), 403, "forbidden")
    assert_problem(gateway.post("/api/v1/users", token=sales_token, json={}), 403, "forbidden")
    assert gateway.get("/api/v1/me", token=sales_token).json()["role"] == "sales"


# --- bodies, errors, languages, request ids --------------------------------------------

def test_bad_json_is_400(gateway, admin_token):
    response = gateway.post("/api/v1/users", token=admin_token, data=b'{"email": ',
                            headers={"Content-Type": "application/json"})
    assert_problem(response, 400, "bad_request")


def test_a_body_that_is_not_an_object_is_422(gateway, admin_token):
    body = assert_problem(gateway.post("/api/v1/users", token=admin_token, json=[1, 2]), 422, "validation_failed")
    assert body["errors"] == {"_schema": ["Must be a JSON object."]}


def test_an_oversized_body_is_413(gateway):
    response = gateway.post("/api/v1/auth/login", data=b"{" + b" " * (1024 * 1024 + 1) + b"}")
    assert_problem(response, 413, "payload_too_large")


def test_titles_and_messages_follow_accept_language(gateway, admin_token):
    body = {"email": "not-an-email", "name": "Li", "role": "viewer", "password": "a long enough password"}
    for language in ("zh-CN", "zh-CN,zh;q=0.9,en;q=0.8", "zh"):
        response = gateway.post("/api/v1/users", token=admin_token, json=body,
                                headers={"Accept-Language": language})
        problem = assert_problem(response, 422, "validation_failed")
        assert problem["title"] == "输入无效"
        assert problem["errors"] == {"email": ["不是有效的电子邮件地址。"]}
        assert response.headers["Content-Language"] == "zh-CN"
    english = gateway.post("/api/v1/users", token=admin_token, json=body, headers={"Accept-Language": "en-US,en"})
    assert assert_problem(english, 422, "validation_failed")["errors"] == {"email": ["Not a valid email address."]}
    assert assert_problem(gateway.get("/api/v1/me", headers={"Accept-Language": "zh-CN"}),
                          401, "unauthorized")["title"] == "需要登录"


def test_a_sane_request_id_is_kept_and_any_other_replaced(gateway):
    assert gateway.get("/api/v1/me", headers={"X-Request-ID": "abc-123.x"}).headers["X-Request-ID"] == "abc-123.x"
    for insane in ("has spaces", "x" * 200, "<script>"):
        returned = gateway.get("/api/v1/me", headers={"X-Request-ID": insane}).headers["X-Request-ID"]
        assert returned != insane and len(returned) == 32
    assert len(gateway.get("/api/v1/me").headers["X-Request-ID"]) == 32


def test_unknown_routes_and_methods_are_problems(gateway):
    assert_problem(gateway.get("/api/v1/nothing/here"), 404, "not_found")
    response = gateway.request("PUT", "/api/v1/customers")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "GET, HEAD, POST"


# --- first admin, metrics, docs --------------------------------------------------------

def test_first_start_without_a_password_writes_one_for_the_admin(start_gateway, monkeypatch, tmp_path):
    monkeypatch.delenv("CRM_ADMIN_PASSWORD")
    gateway = start_gateway()
    path = tmp_path / "admin-password"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    password = path.read_text().strip()
    assert gateway.login(ADMIN_EMAIL, password)["access_token"]


def test_requests_are_counted_and_timed_by_route_template(gateway, admin_token):
    def count(route, method, status):
        return REGISTRY.get_sample_value("crm_http_requests_total",
                                         {"route": route, "method": method, "status": status}) or 0.0

    route = "/api/v1/users/{user_id}"
    before_404, before_401 = count(route, "GET", "404"), count(route, "GET", "401")
    before_timed = REGISTRY.get_sample_value("crm_http_request_duration_seconds_count", {"route": route}) or 0.0
    gateway.get("/api/v1/users/00000000-0000-4000-8000-000000000000", token=admin_token)
    gateway.get("/api/v1/users/00000000-0000-4000-8000-000000000001")
    assert count(route, "GET", "404") == before_404 + 1
    assert count(route, "GET", "401") == before_401 + 1
    assert REGISTRY.get_sample_value("crm_http_request_duration_seconds_count", {"route": route}) == before_timed + 2
    exposed = gateway.get("/metrics").text
    assert 'crm_http_requests_total{method="GET",route="/api/v1/users/{user_id}",status="404"}' in exposed
    assert "00000000-0000-4000-8000-000000000000" not in exposed


def test_openapi_document_and_docs_page(gateway):
    document = gateway.get("/openapi.json")
    assert document.status_code == 200 and document.headers["Content-Type"] == "application/json"
    assert "/api/v1/customers/{customer_id}" in document.json()["paths"]
    page = gateway.get("/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "/openapi.json" in page.text and "swagger-ui" in page.text


def test_api_requests_beyond_the_queue_bound_are_shed_at_once(gateway, admin_token):
    """Load shedding: with max_workers + CRM_GATEWAY_MAX_QUEUED API requests already in the
    entrypoint, one more is a 503 problem with Retry-After, counted; /health and /ready are never shed.
    (tests/test_faults.py sheds a real burst.)"""
    from gateway.http import ApiEndpoint

    policy = next(entrypoint.policy for entrypoint in gateway.container.entrypoints
                  if isinstance(entrypoint, ApiEndpoint))
    assert policy.max_in_flight == 10 + 2 * 10  # the default queue: twice the workers
    before = REGISTRY.get_sample_value("crm_http_shed_total", {"route": "/api/v1/me"}) or 0
    policy.in_flight += policy.max_in_flight  # as if that many requests were waiting
    try:
        response = gateway.get("/api/v1/me", token=admin_token)
        assert_problem(response, 503, "overloaded")
        assert response.headers["Retry-After"] == "1"
        assert gateway.get("/health").status_code == 200
        ready = gateway.get("/ready")
        assert "overloaded" not in ready.text
    finally:
        policy.in_flight -= policy.max_in_flight
    assert REGISTRY.get_sample_value("crm_http_shed_total", {"route": "/api/v1/me"}) == before + 1
    assert gateway.get("/api/v1/me", token=admin_token).status_code == 200
