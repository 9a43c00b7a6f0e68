"""API keys, rate limits, security headers and request limits, end to end: an
integration with a key, over HTTP, against the whole system on PostgreSQL."""
import time

import pytest
import requests

from api_helpers import assert_problem, unique
from conftest import Api, wait_until


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
    # One gateway instance: a bucket of 3 that refills one request every 20 s. The
    # 4th is refused unless the requests took 20 s, the 7th unless they took a minute.
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


def live_gateways(system, instance):
    """How many gateway instances ``instance`` counts (its crm_gateway_live_instances), None while it is down."""
    try:
        text = system.metrics(instance)
    except requests.ConnectionError:
        return None
    values = [line.split()[1] for line in text.splitlines() if line.startswith("crm_gateway_live_instances ")]
    return float(values[0]) if values else None


@pytest.fixture
def two_gateways(system):
    system.start("gateway", instance="gateway-2")
    try:
        wait_until(lambda: live_gateways(system, "gateway") == live_gateways(system, "gateway-2") == 2, 60,
                   interval=0.25, message="each gateway instance to count two")
        yield "gateway", "gateway-2"
    finally:
        system.stop("gateway-2")
        # The tests after this one expect one instance holding the whole limit again.
        wait_until(lambda: live_gateways(system, "gateway") == 1, 30, interval=0.25,
                   message="the first gateway to count itself alone")


def test_two_gateway_instances_divide_a_keys_limit_within_the_documented_tolerance(system, admin, two_gateways):
    limit = 10
    key = create_key(admin, scopes=["customers:read"], rate_limit_per_minute=limit)
    clients = []
    for instance in two_gateways:
        client = Api(system.url(instance))
        client.http.headers["X-API-Key"] = key["key"]
        clients.append(client)
    # Spread evenly, as a balancer would, until both instances have refused.
    statuses = {instance: [] for instance in two_gateways}
    started = time.monotonic()
    for sent in range(4 * limit):
        instance = two_gateways[sent % 2]
        answer = clients[sent % 2].get("/customers", params={"limit": 1})
        assert answer.status_code in (200, 429), answer.text
        statuses[instance].append(answer.status_code)
        if answer.status_code == 429:
            refused = answer
        if all(429 in answers for answers in statuses.values()):
            break
    elapsed = time.monotonic() - started
    admitted = sum(answers.count(200) for answers in statuses.values())
    assert all(429 in answers for answers in statuses.values()), statuses
    # Documented (gateway/ratelimit.py): at most N*b + L*t/60 in t seconds, b = L/N,
    # so with N = 2 the two buckets of 5 and what they refilled meanwhile; one
    # instance that ignored the other would let 10 through alone. At least the two
    # full buckets: a share smaller than L/2 would refuse too early.
    assert limit <= admitted <= limit + limit * elapsed / 60, (admitted, elapsed, statuses)
    assert_problem(refused, 429)
    assert refused.headers["RateLimit-Limit"] == str(limit) and int(refused.headers["Retry-After"]) > 0


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
