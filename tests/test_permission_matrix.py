"""The permission matrix, end to end: every documented operation, called by every role.

For each operation of /openapi.json and each role, one request with that
role's token, ids that do not exist and an empty body: a role the matrix
(gateway.permissions) refuses gets 403; a role it admits never does (its
answer is whatever the operation says to such a request: 404, 422, 409, 200).
Then mass assignment: fields a caller may not set are refused with a 422
naming them, never silently dropped or applied.
"""
import secrets
import uuid
from datetime import date, timedelta

import pytest
import requests

from api_helpers import assert_problem, unique
from conftest import ADMIN_EMAIL, ADMIN_PASSWORD, login

from crm_common.context import ROLES
from gateway.permissions import MATRIX

PASSWORD = "a long enough password for the matrix"
PUBLIC_OPERATIONS = {("post", "/api/v1/auth/login"), ("post", "/api/v1/auth/refresh"), ("get", "/ready")}
# Admitted calls that would really run a job for the whole system (they take no id
# and no body): a rebuild would make the report tests' own rebuild answer 409, and
# the expiry check writes alerts other tests count. Refusals are still checked here;
# what they do for admins is tested in test_reports.py and test_sales_contracts.py.
NOT_RUN_FOR_ADMITTED_ROLES = {("post", "/api/v1/reports/rebuild"), ("post", "/api/v1/contracts/check-expiry")}
# Ends the caller's session: called after every other operation.
SIGN_OUT = ("post", "/api/v1/auth/logout")


@pytest.fixture(scope="module")
def callers(system, admin):
    """A signed-in user of every role, each in a session of its own: {role: Api}."""
    apis = {"admin": login(system, ADMIN_EMAIL, ADMIN_PASSWORD)}  # not the shared admin: we sign it out
    for role in ROLES:
        if role == "admin":
            continue
        email = f"matrix-{role}-{secrets.token_hex(3)}@e2e.example"
        created = admin.post("/users", json={"email": email, "name": f"Matrix {role}", "role": role,
                                             "team_id": "east", "password": PASSWORD})
        assert created.status_code == 201, created.text
        apis[role] = login(system, email, PASSWORD)
        apis[role].user = created.json()
    return apis


@pytest.fixture(scope="module")
def operations(system):
    document = requests.get(system.gateway_url + "/openapi.json", timeout=10).json()
    found = [(method, path, operation) for path, item in document["paths"].items()
             for method, operation in item.items()]
    # The sign-out runs last: it ends the session the other calls use.
    return sorted(found, key=lambda found_operation: found_operation[:2] == SIGN_OUT)


def call(api, method, path, operation):
    """One request to ``path`` with made-up ids and an empty body of the operation's kind."""
    url = api.base + path.removeprefix("/api/v1").format_map(_NewIds())
    content = operation.get("requestBody", {}).get("content", {})
    if "multipart/form-data" in content:
        # An empty file: the upload routes then answer what they answer to an empty upload.
        kwargs = {"files": {"file": ("empty.csv", b"", "text/csv")}}
    elif content:
        kwargs = {"json": {}}
    else:
        kwargs = {}
    return api.http.request(method.upper(), url, timeout=30, **kwargs)


class _NewIds(dict):
    def __missing__(self, name):
        return str(uuid.uuid4())


def test_every_operation_answers_each_role_as_the_matrix_says(operations, callers):
    unruled, wrong = [], []
    for method, path, operation in operations:
        if (method, path) in PUBLIC_OPERATIONS:
            assert "x-permission" not in operation
            continue
        rule = operation.get("x-permission")
        if rule is None:
            unruled.append(f"{method.upper()} {path}")
            continue
        admitted = MATRIX[rule["resource"]][rule["action"]]
        assert set(operation.get("x-roles", ROLES)) == set(admitted), (method, path)
        for role, api in callers.items():
            if role in admitted and (method, path) in NOT_RUN_FOR_ADMITTED_ROLES:
                continue
            status = call(api, method, path, operation).status_code
            if role not in admitted and status != 403:
                wrong.append(f"{role} {method.upper()} {path}: {status}, refused by the matrix")
            if role in admitted and (status in (401, 403) or status >= 500):
                wrong.append(f"{role} {method.upper()} {path}: {status}, admitted by the matrix")
    assert not unruled, f"operations without a permission rule: {unruled}"
    assert not wrong, "\n".join(wrong)
    assert len(operations) > 100  # the whole API was walked, not an empty document


# --- mass assignment ----------------------------------------------------------------

@pytest.fixture
def seller(make_user):
    return make_user("sales")


def today():
    return date.today()


def refused_naming(response, field):
    """A 422 whose errors name ``field`` and nothing else: the rest of the body was fine."""
    body = assert_problem(response, 422, field)
    assert set(body["errors"]) == {field}, body
    return body


def test_a_sales_rep_may_not_give_a_customer_to_someone_else(admin, seller, make_user):
    colleague = make_user("sales")
    name = unique("Owned Elsewhere")
    refused_naming(seller.post("/customers", json={"kind": "company", "name": name,
                                                    "owner_id": colleague.user["id"]}), "owner_id")
    assert admin.get("/customers", params={"q": name}).json()["items"] == []
    mine = seller.post("/customers", json={"kind": "company", "name": unique("Mine"),
                                           "owner_id": seller.user["id"]})
    assert mine.status_code == 201, mine.text
    # The owner changes only by assignment, which a sales rep may not do.
    customer = mine.json()
    refused_naming(seller.patch(f"/customers/{customer['id']}", json={"owner_id": colleague.user["id"]}),
                   "owner_id")
    assert_problem(seller.post(f"/customers/{customer['id']}/assign", json={"owner_id": colleague.user["id"]}), 403)
    assert seller.get(f"/customers/{customer['id']}").json()["owner_id"] == seller.user["id"]


@pytest.mark.parametrize("field, value", [("role", "admin"), ("team_id", "west"), ("active", False),
                                          ("email", "someone-else@e2e.example")])
def test_users_may_not_change_their_own_role_team_status_or_email(seller, field, value):
    refused_naming(seller.patch("/me", json={"name": "Still Sales", field: value}), field)
    me = seller.get("/me").json()
    assert me["role"] == "sales" and me["team_id"] == "east" and me["active"] and me["name"] != "Still Sales"
    # Nor through the admin's route.
    assert_problem(seller.patch(f"/users/{seller.user['id']}", json={field: value}), 403)


SERVER_FIELDS = [("id", str(uuid.uuid4())), ("version", 7), ("created_at", "2020-01-01T00:00:00Z"),
                 ("updated_at", "2020-01-01T00:00:00Z")]


@pytest.mark.parametrize("field, value", SERVER_FIELDS)
def test_server_set_fields_of_customers_are_refused(seller, field, value):
    name = unique("Server Fields")
    refused_naming(seller.post("/customers", json={"kind": "company", "name": name, field: value}), field)
    customer = seller.post("/customers", json={"kind": "company", "name": name})
    assert customer.status_code == 201, customer.text
    refused_naming(seller.patch(f"/customers/{customer.json()['id']}", json={"region": "east", field: value}), field)
    assert seller.get(f"/customers/{customer.json()['id']}").json()["version"] == customer.json()["version"]


@pytest.mark.parametrize("field, value", SERVER_FIELDS + [("status", "confirmed"), ("owner_id", str(uuid.uuid4()))])
def test_server_set_fields_of_orders_are_refused(seller, field, value):
    # Refused by the shape of the body alone: the customer and product need not exist.
    body = {"customer_id": str(uuid.uuid4()), "lines": [{"product_id": str(uuid.uuid4()), "quantity": 1}]}
    refused_naming(seller.post("/orders", json={**body, field: value}), field)


@pytest.mark.parametrize("field, value", SERVER_FIELDS + [("status", "active"), ("owner_id", str(uuid.uuid4()))])
def test_server_set_fields_of_contracts_are_refused(seller, field, value):
    body = {"customer_id": str(uuid.uuid4()), "title": "Maintenance", "value": "100", "currency": "CNY",
            "start_date": today().isoformat(), "end_date": (today() + timedelta(days=30)).isoformat()}
    refused_naming(seller.post("/contracts", json={**body, field: value}), field)
    refused_naming(seller.patch(f"/contracts/{uuid.uuid4()}", json={"title": "Renamed", field: value}), field)
