"""API keys: created by admins, shown once, stored hashed, scoped, revocable, expiring;
first as plain domain code, then over HTTP in front of a fake customers service."""
import hashlib
from datetime import timedelta

import pytest

from crm_common.errors import NotFound, Unauthorized, ValidationFailed
from crm_common.types import utcnow

from gateway import api_keys
from gateway.api_keys import ApiKeys, scope_of
from gateway.models import ApiKey, User

from gateway_fakes import FakeCustomers
from gateway_support import assert_problem

SCOPES = ["customers:read", "customers:write", "orders:read"]


class Clock:
    def __init__(self):
        self.now = utcnow()

    def __call__(self):
        return self.now


@pytest.fixture
def admin(session):
    user = User(email="a@example.com", name="A", role="admin", password_hash="x")
    session.add(user)
    session.flush()
    return user


def test_routes_need_the_scope_of_their_tag_and_method_and_people_routes_none():
    assert scope_of("GET", ("customers",)) == "customers:read"
    assert scope_of("DELETE", ("price lists",)) == "price-lists:write"
    assert scope_of("POST", ("auth",)) is None
    assert scope_of("GET", ("users",)) is None
    assert scope_of("POST", ("api keys",)) is None


def test_a_key_is_shown_once_and_only_its_hash_is_stored(session, admin):
    key, secret = ApiKeys(session).create(admin.id, {"name": "ERP", "scopes": ["customers:read"]}, SCOPES)
    assert secret.startswith(f"crm_{key.id}_")
    stored = session.get(ApiKey, key.id)
    assert secret.split("_", 2)[2] not in (stored.secret_hash, stored.name, stored.scopes)
    assert stored.secret_hash == hashlib.sha256(secret.split("_", 2)[2].encode()).hexdigest()
    assert "key" not in api_keys.to_dict(stored) and "secret_hash" not in api_keys.to_dict(stored)


def test_a_valid_key_acts_as_its_creator_and_records_its_last_use_once_a_minute(session, admin):
    clock = Clock()
    keys = ApiKeys(session, clock=clock)
    key, secret = keys.create(admin.id, {"name": "ERP", "scopes": ["customers:read", "orders:read"]}, SCOPES)
    principal = keys.authenticate(secret)
    assert (principal.user_id, principal.role, principal.key_id) == (admin.id, "admin", key.id)
    assert principal.scopes == {"customers:read", "orders:read"}
    session.expire_all()
    first_use = session.get(ApiKey, key.id).last_used_at
    assert first_use == clock.now
    clock.now += timedelta(seconds=30)
    keys.authenticate(secret)
    session.expire_all()
    assert session.get(ApiKey, key.id).last_used_at == first_use
    clock.now += timedelta(seconds=31)
    keys.authenticate(secret)
    session.expire_all()
    assert session.get(ApiKey, key.id).last_used_at == clock.now


@pytest.mark.parametrize("tamper", [
    lambda secret: secret[:-1] + ("A" if secret[-1] != "A" else "B"),  # wrong secret
    lambda secret: "crm_" + "0" * 32 + secret[36:],  # unknown id
    lambda secret: "Bearer " + secret,  # not a key at all
    lambda secret: "",
])
def test_a_wrong_or_malformed_key_is_401(session, admin, tamper):
    _, secret = ApiKeys(session).create(admin.id, {"name": "ERP", "scopes": ["customers:read"]}, SCOPES)
    with pytest.raises(Unauthorized):
        ApiKeys(session).authenticate(tamper(secret))


def test_revoked_expired_and_deactivated_creators_keys_are_401(session, admin):
    clock = Clock()
    keys = ApiKeys(session, clock=clock)
    revoked_key, revoked = keys.create(admin.id, {"name": "a", "scopes": ["customers:read"]}, SCOPES)
    keys.revoke(revoked_key.id)
    _, expiring = keys.create(admin.id, {"name": "b", "scopes": ["customers:read"],
                                         "expires_at": clock.now + timedelta(hours=1)}, SCOPES)
    keys.authenticate(expiring)
    clock.now += timedelta(hours=1)
    for secret in (revoked, expiring):
        with pytest.raises(Unauthorized):
            keys.authenticate(secret)
    _, live = keys.create(admin.id, {"name": "c", "scopes": ["customers:read"]}, SCOPES)
    admin.active = False
    with pytest.raises(Unauthorized):
        keys.authenticate(live)


def test_unknown_scopes_and_past_expiry_are_422_naming_the_field(session, admin):
    with pytest.raises(ValidationFailed) as error:
        ApiKeys(session).create(admin.id, {"name": "x", "scopes": ["customers:read", "users:write"]}, SCOPES)
    assert error.value.errors == {"scopes": ["Unknown scope: users:write."]}
    with pytest.raises(ValidationFailed) as error:
        ApiKeys(session).create(admin.id, {"name": "x", "scopes": ["customers:read"],
                                           "expires_at": utcnow() - timedelta(seconds=1)}, SCOPES)
    assert "expires_at" in error.value.errors
    with pytest.raises(NotFound):
        ApiKeys(session).revoke("no-such-key")


# --- over HTTP -------------------------------------------------------------------

def create_key(gateway, token, **body):
    response = gateway.post("/api/v1/api-keys", token=token, json={"name": "ERP sync", **body})
    assert response.status_code == 201, response.text
    return response.json()


def test_admin_creates_lists_and_revokes_keys_and_the_secret_is_never_listed(gateway, admin_token, start_fake):
    start_fake(FakeCustomers)
    created = create_key(gateway, admin_token, scopes=["customers:read"])
    assert created["key"].startswith("crm_") and created["scopes"] == ["customers:read"]
    assert gateway.get(f"/api/v1/customers", headers={"X-API-Key": created["key"]}).status_code == 200

    listed = gateway.get("/api/v1/api-keys", token=admin_token)
    assert listed.status_code == 200
    item = next(item for item in listed.json()["items"] if item["id"] == created["id"])
    assert "key" not in item and created["key"] not in listed.text
    assert item["last_used_at"] is not None

    assert gateway.request("DELETE", f"/api/v1/api-keys/{created['id']}", token=admin_token).status_code == 204
    revoked = gateway.get("/api/v1/customers", headers={"X-API-Key": created["key"]})
    assert_problem(revoked, 401, "unauthorized")
    assert gateway.request("DELETE", "/api/v1/api-keys/nope", token=admin_token).status_code == 404


def test_only_admins_manage_keys(gateway, admin_token):
    _, sales_token = gateway.create_user(admin_token, "sales", "east")
    response = gateway.post("/api/v1/api-keys", token=sales_token, json={"name": "x", "scopes": ["customers:read"]})
    assert_problem(response, 403, "forbidden")


def test_a_key_is_refused_outside_its_scopes_and_on_people_and_key_routes(gateway, admin_token, start_fake):
    start_fake(FakeCustomers)
    key = create_key(gateway, admin_token, scopes=["customers:read"])["key"]
    headers = {"X-API-Key": key}
    assert_problem(gateway.post("/api/v1/customers", headers=headers, json={"name": "Acme"}), 403, "forbidden")
    assert_problem(gateway.get("/api/v1/users", headers=headers), 403, "forbidden")
    assert_problem(gateway.get("/api/v1/me", headers=headers), 403, "forbidden")
    minted = gateway.post("/api/v1/api-keys", headers=headers, json={"name": "x", "scopes": ["customers:read"]})
    assert_problem(minted, 403, "forbidden")
    both = gateway.get("/api/v1/customers", token=admin_token, headers=headers)
    assert_problem(both, 400, "bad_request")


def test_what_a_key_creates_belongs_to_its_creator(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeCustomers)
    me = gateway.get("/api/v1/me", token=admin_token).json()
    key = create_key(gateway, admin_token, scopes=["customers:write"])
    created = gateway.post("/api/v1/customers", headers={"X-API-Key": key["key"]}, json={"name": "Acme"})
    assert created.status_code == 201, created.text
    assert created.json()["owner_id"] == me["id"]
    context = fake_calls[-1]["context"]
    assert (context["user_id"], context["user_role"], context["api_key_id"]) == (me["id"], "admin", key["id"])


def test_a_bad_key_request_is_422_naming_the_field(gateway, admin_token):
    response = gateway.post("/api/v1/api-keys", token=admin_token, json={"name": "x", "scopes": ["users:read"]})
    assert assert_problem(response, 422, "validation_failed")["errors"] == {"scopes": ["Unknown scope: users:read."]}
    response = gateway.post("/api/v1/api-keys", token=admin_token, json={"name": "x", "scopes": []})
    assert "scopes" in assert_problem(response, 422, "validation_failed")["errors"]


def test_the_document_names_both_schemes_each_operations_scope_and_the_scopes_a_key_may_hold():
    import json

    from gateway.service import GatewayService, openapi_json

    document = json.loads(openapi_json(GatewayService))
    assert document["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"
    listing = document["paths"]["/api/v1/customers"]["get"]
    assert listing["security"] == [{"bearerAuth": []}, {"apiKey": []}] and listing["x-scope"] == "customers:read"
    assert {"429", "401"} <= set(listing["responses"])
    assert "RateLimit-Remaining" in listing["responses"]["200"]["headers"]
    for path, method in (("/api/v1/api-keys", "post"), ("/api/v1/users", "get"), ("/api/v1/me", "get")):
        operation = document["paths"][path][method]
        assert operation["security"] == [{"bearerAuth": []}] and "x-scope" not in operation
    create = document["paths"]["/api/v1/api-keys"]["post"]
    assert create["x-roles"] == ["admin"] and {"201", "403", "422"} <= set(create["responses"])
    scopes = document["components"]["schemas"]["ApiKeyCreateRequest"]["properties"]["scopes"]["items"]["enum"]
    assert {"customers:read", "orders:write", "price-lists:read"} <= set(scopes)
    assert not any(scope.startswith(("users:", "auth:", "api-keys:")) for scope in scopes)
    listed = document["components"]["schemas"]["ApiKeyResponse"]["properties"]
    assert "key" not in listed and "secret_hash" not in listed
