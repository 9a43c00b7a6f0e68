"""What every answer carries for the browser's sake: security headers, no-store on
authenticated answers, a CSP on /docs allowing exactly Swagger UI, CORS only for
configured origins; and the request limits (body size, page size) over HTTP."""
import base64
import hashlib
import re

import pytest

from gateway.openapi import DOCS_PAGE

from gateway_fakes import FakeCustomers
from gateway_support import assert_problem

ORIGIN = "https://app.example.com"


def assert_security_headers(response):
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_every_answer_carries_the_security_headers_and_authenticated_ones_no_store(gateway, admin_token):
    me = gateway.get("/api/v1/me", token=admin_token)
    refused = gateway.get("/api/v1/me")
    for response in (me, refused):
        assert_security_headers(response)
        assert response.headers["Cache-Control"] == "no-store"
    for path in ("/health", "/metrics", "/openapi.json", "/api/v1/nowhere"):
        assert_security_headers(gateway.get(path))
    assert me.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_the_docs_page_may_run_only_swagger_ui_from_its_cdn_and_its_own_inline_script(gateway):
    response = gateway.get("/docs")
    assert_security_headers(response)
    policy = dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'none'"
    inline = re.search(r"<script>(.*?)</script>", DOCS_PAGE, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert policy["script-src"].split() == ["https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/", f"'sha256-{digest}'"]
    # Every script the page loads is under the allowed folder.
    for src in re.findall(r'<script src="([^"]+)"', DOCS_PAGE):
        assert src.startswith("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/")
    assert policy["connect-src"] == "'self'"


@pytest.fixture
def cors_gateway(start_gateway, monkeypatch):
    monkeypatch.setenv("CRM_CORS_ORIGINS", f"{ORIGIN}, https://other.example.com")
    return start_gateway()


def test_cors_answers_only_configured_origins(cors_gateway):
    token = cors_gateway.login()["access_token"]
    allowed = cors_gateway.get("/api/v1/me", token=token, headers={"Origin": ORIGIN})
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "RateLimit-Remaining" in allowed.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    other = cors_gateway.get("/api/v1/me", token=token, headers={"Origin": "https://evil.example.com"})
    assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers


def test_preflight_is_answered_for_allowed_origins_only(cors_gateway):
    ask = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization, content-type"}
    preflight = cors_gateway.request("OPTIONS", "/api/v1/customers", headers=ask)
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert set(preflight.headers["Access-Control-Allow-Methods"].split(", ")) >= {"GET", "POST"}
    assert {"Authorization", "Content-Type", "X-API-Key"} <= set(
        preflight.headers["Access-Control-Allow-Headers"].split(", "))
    stranger = cors_gateway.request("OPTIONS", "/api/v1/customers",
                                    headers={**ask, "Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in stranger.headers
    assert "Access-Control-Allow-Methods" not in stranger.headers


def test_without_configured_origins_no_origin_gets_cors(gateway, admin_token):
    response = gateway.get("/api/v1/me", token=admin_token, headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in response.headers


# --- request limits ----------------------------------------------------------------

def test_a_json_body_over_one_mb_is_413_on_an_authenticated_route(gateway, admin_token):
    body = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    response = gateway.post("/api/v1/customers", token=admin_token, data=body,
                            headers={"Content-Type": "application/json"})
    assert_problem(response, 413, "payload_too_large")


def test_a_page_of_more_than_200_is_422_naming_limit_and_200_is_served(gateway, admin_token, start_fake):
    start_fake(FakeCustomers)
    too_many = gateway.get("/api/v1/customers?limit=201", token=admin_token)
    assert "limit" in assert_problem(too_many, 422, "validation_failed")["errors"]
    assert gateway.get("/api/v1/customers?limit=200", token=admin_token).status_code == 200
