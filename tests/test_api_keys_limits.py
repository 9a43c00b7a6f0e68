"""API keys, rate limits, security headers and request limits, end to end: an
integration with a key, over HTTP, against the whole system on PostgreSQL."""
import requests

from api_helpers import assert_problem, unique
from conftest import Api


def key_api(system, key):
    api = Api(system.gateway_url)
    api.http.headers["X-API-Key"] = key
    return api


def create_key(admin, **body):
    response = admin.post("/api-keys", json={"name": unique("ERP sync"), **body})
    assert response.status_code == 201, response.text
    return response.json()


def test_an_integration_works_within_its_scopes_as_the_admin_who_made_its_key(system, admin):
    me = admin.get("/me").json()
    key = create_key(admin, scopes=["customers:read", "customers:write"])
    erp = key_api(system, key["key"])

    created = erp.post("/customers", json={"kind": "company", "name": unique("Key Co")})
    assert created.status_code == 201, created.text
    assert created.json()["owner_id"] == me["id"]
    listed = erp.get("/customers", params={"q": created.json()["name"]})
    assert [c["id"] for c in listed.json()["items"]] == [created.json()["id"]]

    assert_problem(erp.get("/orders"), 403)
    assert_problem(erp.get("/users"), 403)
    assert_problem(erp.post("/api-keys", json={"name": "more", "scopes": ["customers:read"]}), 403)

    shown = next(k for k in admin.get("/api-keys", params={"limit": 200}).json()["items"] if k["id"] == key["id"])
    assert shown["last_used_at"] is not None and "key" not in shown

    assert admin.delete(f"/api-keys/{key['id']}").status_code == 204
    assert_problem(erp.get("/customers"), 401)


def test_a_wrong_or_expired_key_is_401(system, admin):
    key = create_key(admin, scopes=["customers:read"])
    assert_problem(key_api(system, key["key"][:-2] + "xx").get("/customers"), 401)
    assert_problem(key_api(system, "not-a-key").get("/customers"), 401)


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(system, admin):
    key = create_key(admin, scopes=["customers:read"], rate_limit_per_minute=3)
    erp = key_api(system, key["key"])
    # On PostgreSQL the gateway counts calendar minutes: 7 requests span at most two
    # windows of 3, so the 7th is refused at the latest, wherever the minute turns.
    answers = []
    while len(answers) < 7 and (not answers or answers[-1].status_code != 429):
        answers.append(erp.get("/customers", params={"limit": 1}))
    refused = answers[-1]
    assert_problem(refused, 429)
    assert all(a.status_code == 200 for a in answers[:-1]) and len(answers) >= 4
    assert answers[0].headers["RateLimit-Limit"] == "3" and answers[0].headers["RateLimit-Remaining"] == "2"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    # The admin who made the key keeps their own allowance.
    mine = admin.get("/me")
    assert mine.status_code == 200 and int(mine.headers["RateLimit-Remaining"]) > 0


def test_answers_carry_security_headers_and_the_docs_page_a_strict_csp(system, admin):
    answer = admin.get("/me")
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    docs = requests.get(system.gateway_url + "/docs", timeout=10)
    assert "script-src https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/ 'sha256-" in docs.headers[
        "Content-Security-Policy"]
    document = requests.get(system.gateway_url + "/openapi.json", timeout=10).json()
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "An integration's key: crm_<id>_<secret>"}
    assert {"bearerAuth": []} in document["paths"]["/api/v1/customers"]["get"]["security"]
    assert {"apiKey": []} in document["paths"]["/api/v1/customers"]["get"]["security"]


def test_oversized_bodies_and_pages_are_refused(system, admin):
    body = '{"kind": "company", "name": "' + "x" * (1024 * 1024) + '"}'
    too_large = admin.post("/customers", data=body, headers={"Content-Type": "application/json"})
    assert_problem(too_large, 413)
    assert_problem(admin.get("/customers", params={"limit": 201}), 422, "limit")
    assert admin.get("/customers", params={"limit": 200}).status_code == 200
