"""The permission matrix: every route is decided by it, and docs/security.md shows it as it is."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import permissions
from gateway.http import ApiEndpoint, route_registry
from gateway.permissions import MATRIX, render_markdown, rule
from gateway.service import GatewayService, openapi_json
from gateway_support import assert_problem

SECURITY_DOC = Path(__file__).resolve().parents[3] / "docs" / "security.md"
START, END = "<!-- permission-matrix -->\n", "<!-- /permission-matrix -->"


def routes():
    return route_registry(GatewayService)


def test_every_route_is_public_or_decided_by_the_matrix():
    for route in routes():
        if route.public:
            assert route.permission is None and route.roles is None, route
            continue
        assert route.permission is not None, f"{route.method} {route.template} has no permission rule"
        admitted = MATRIX[route.permission.resource][route.permission.action]
        # None means every role: the OpenAPI document then names no roles and no 403.
        assert set(route.roles or permissions.ROLES) == set(admitted), route


def test_only_sign_in_and_operations_routes_are_public():
    public = {(route.method, route.template) for route in routes() if route.public and route.documented}
    assert public == {("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/refresh"), ("GET", "/ready")}


def test_every_matrix_entry_decides_some_route():
    used = {(route.permission.resource, route.permission.action) for route in routes() if route.permission}
    declared = {(resource, action) for resource, actions in MATRIX.items() for action in actions}
    assert declared == used


def test_a_route_without_a_decision_cannot_be_declared():
    with pytest.raises(ValueError, match="allow=permissions.rule"):
        ApiEndpoint("GET", "/nothing-declared")
    with pytest.raises(ValueError, match="either"):
        ApiEndpoint("GET", "/both", public=True, allow=rule("customers", "read"))


def test_a_rule_the_matrix_lacks_is_refused():
    with pytest.raises(ValueError, match="no entry"):
        rule("customers", "approve")
    with pytest.raises(ValueError, match="no entry"):
        rule("spaceships", "read")
    with pytest.raises(ValueError, match="admits"):
        permissions.check_matrix({"customers": {"read": ("admin", "boss")}})


def test_the_security_doc_shows_the_matrix_as_it_is():
    text = SECURITY_DOC.read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1, "docs/security.md lacks the permission-matrix markers"
    copy = text.split(START, 1)[1].split(END, 1)[0]
    assert copy == render_markdown(), "docs/security.md's matrix is stale: paste `python -m gateway.permissions` into it"


def test_the_module_prints_the_table():
    printed = subprocess.run([sys.executable, "-W", "ignore", "-m", "gateway.permissions"], capture_output=True,
                             text=True, check=True).stdout
    assert printed == render_markdown()
    assert "| customers | assign | ✓ | ✓ | · | · | · |" in printed.splitlines()


def test_the_openapi_document_names_each_operations_rule():
    paths = json.loads(openapi_json(GatewayService))["paths"]
    assert paths["/api/v1/customers/{customer_id}/assign"]["post"]["x-permission"] == {
        "resource": "customers", "action": "assign"}
    assert "x-permission" not in paths["/api/v1/auth/login"]["post"]


def test_a_viewer_may_not_change_tasks(gateway, admin_token):
    # Refused at the gateway, before the notifications service (which refuses it too) is asked.
    _, viewer_token = gateway.create_user(admin_token, "viewer", "east")
    assert_problem(gateway.post("/api/v1/tasks", token=viewer_token, json={"title": "Call back"}), 403, "forbidden")
    assert_problem(gateway.post("/api/v1/tasks/x/complete", token=viewer_token), 403, "forbidden")
