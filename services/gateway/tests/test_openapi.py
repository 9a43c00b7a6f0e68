"""The OpenAPI document, built from the route registry."""
import json

from gateway.http import route_registry
from gateway.service import GatewayService, openapi_json

EXPECTED_OPERATIONS = {
    ("post", "/api/v1/auth/login"), ("post", "/api/v1/auth/refresh"), ("get", "/api/v1/me"),
    ("post", "/api/v1/users"), ("get", "/api/v1/users"), ("get", "/api/v1/users/{user_id}"),
    ("post", "/api/v1/customers"), ("get", "/api/v1/customers"),
    ("get", "/api/v1/customers/{customer_id}"), ("patch", "/api/v1/customers/{customer_id}"),
    ("delete", "/api/v1/customers/{customer_id}"),
    ("post", "/api/v1/customers/{customer_id}/restore"), ("get", "/api/v1/customers/{customer_id}/history"),
    ("post", "/api/v1/customers/{customer_id}/assign"), ("post", "/api/v1/customers/bulk-assign"),
    ("get", "/api/v1/customers/{customer_id}/duplicates"), ("post", "/api/v1/customers/{customer_id}/merge"),
    ("get", "/api/v1/customer-fields"), ("post", "/api/v1/customer-fields"),
    ("get", "/api/v1/reports/customers/summary"), ("get", "/api/v1/notifications"), ("get", "/ready"),
}


def document():
    return json.loads(openapi_json(GatewayService))


def test_every_route_is_documented_once():
    paths = document()["paths"]
    operations = {(method, path) for path, item in paths.items() for method in item}
    registered = {(route.method.lower(), route.template) for route in route_registry(GatewayService)
                  if route.documented}
    assert operations == registered
    assert EXPECTED_OPERATIONS <= operations
    ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_registry_carries_roles_and_public_flags():
    routes = {(route.method, route.template): route for route in route_registry(GatewayService)}
    assert routes[("POST", "/api/v1/auth/login")].public
    assert routes[("POST", "/api/v1/users")].roles == ("admin",)
    assert routes[("POST", "/api/v1/customers")].roles == ("admin", "manager", "sales")
    assert routes[("GET", "/api/v1/customers")].roles is None
    assert not routes[("GET", "/api/v1/customers")].public


def test_security_bodies_and_errors_are_described():
    doc = document()
    assert doc["openapi"] == "3.0.3"
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    login = doc["paths"]["/api/v1/auth/login"]["post"]
    assert login["security"] == []
    assert login["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/LoginRequest"}
    create_user = doc["paths"]["/api/v1/users"]["post"]
    assert create_user["security"] == [{"bearerAuth": []}] and create_user["x-roles"] == ["admin"]
    assert set(create_user["responses"]) >= {"201", "401", "403", "422", "default"}
    patch = doc["paths"]["/api/v1/customers/{customer_id}"]["patch"]
    assert "412" in patch["responses"]
    assert any(p["in"] == "header" and p["name"] == "If-Match" for p in patch["parameters"])
    listing = doc["paths"]["/api/v1/customers"]["get"]
    assert {p["name"] for p in listing["parameters"] if p["in"] == "query"} >= {"limit", "cursor", "q", "tag", "sort"}
    problem = doc["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "request_id", "errors"} <= set(problem["properties"])


def test_no_schema_exposes_a_password_hash_and_responses_no_password():
    schemas = document()["components"]["schemas"]
    assert all("password_hash" not in schema.get("properties", {}) for schema in schemas.values())
    assert "password" not in schemas["UserResponse"]["properties"]
    assert "password" in schemas["UserCreateRequest"]["properties"]
