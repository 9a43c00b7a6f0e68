"""GatewayService's routes through nameko's worker_factory: the RPC proxies are mocks."""
import pytest
from nameko.testing.services import worker_factory
from werkzeug.wrappers import Request

from crm_common.context import RequestContext
from crm_common.errors import BadRequest, ValidationFailed

from gateway.dependencies import AuthTools
from gateway.http import Reply
from gateway.service import GatewayService
from gateway.users import UserDirectory

CUSTOMER = {"id": "c-1", "name": "Acme", "version": 3}


def request(method="GET", query=None, headers=None):
    return Request.from_values(method=method, query_string=query, headers=headers)


@pytest.fixture
def make_gateway(session, passwords, access_tokens):
    def make(role="sales", user_id="u-caller", team_id="east"):
        context = RequestContext(request_id="r-1", user_id=user_id, role=role, team_id=team_id)
        return worker_factory(GatewayService, db=session, context=context,
                              auth=AuthTools(passwords, access_tokens))
    return make


def test_new_customer_belongs_to_the_callers_team(make_gateway):
    gateway = make_gateway()
    gateway.customers.create_customer.return_value = CUSTOMER
    reply = gateway.create_customer(request("POST"), body={"kind": "company", "name": "Acme"})
    gateway.customers.create_customer.assert_called_once_with({"kind": "company", "name": "Acme"}, "east", False)
    assert reply.data == CUSTOMER
    assert reply.headers == {"Location": "/api/v1/customers/c-1", "ETag": 'W/"3"'}


def test_new_customer_for_another_owner_belongs_to_the_owners_team(make_gateway, session, passwords):
    owner = UserDirectory(session, passwords).create(
        {"email": "w@example.com", "name": "W", "role": "sales", "team_id": "west", "password": "x" * 12})
    session.commit()
    gateway = make_gateway(role="manager")
    gateway.customers.create_customer.return_value = CUSTOMER
    gateway.create_customer(request("POST"), body={"name": "Acme", "owner_id": owner.id})
    gateway.customers.create_customer.assert_called_once_with({"name": "Acme", "owner_id": owner.id}, "west", False)


def test_new_customer_for_an_unknown_owner_is_refused_before_any_rpc(make_gateway):
    gateway = make_gateway(role="admin")
    with pytest.raises(ValidationFailed) as failure:
        gateway.create_customer(request("POST"), body={"name": "Acme", "owner_id": "nobody"})
    assert failure.value.errors == {"owner_id": ["Unknown user."]}
    gateway.customers.create_customer.assert_not_called()


def test_list_passes_known_filters_and_paging(make_gateway):
    gateway = make_gateway()
    gateway.customers.list_customers.return_value = {"items": [], "next_cursor": None}
    query = "q=acme&tag=vip&region=east&include_deleted=true&limit=10&cursor=abc&sort=-name&bogus=1"
    assert gateway.list_customers(request(query=query)) == {"items": [], "next_cursor": None}
    gateway.customers.list_customers.assert_called_once_with(
        {"q": "acme", "tag": ["vip"], "region": "east", "include_deleted": "true"}, 10, "abc", "-name")


def test_list_without_paging_lets_the_service_choose(make_gateway):
    gateway = make_gateway()
    gateway.list_customers(request())
    gateway.customers.list_customers.assert_called_once_with({}, None, None, None)


@pytest.mark.parametrize("limit", ["0", "201", "ten"])
def test_list_with_a_bad_limit_is_refused_before_any_rpc(make_gateway, limit):
    gateway = make_gateway()
    with pytest.raises(ValidationFailed) as failure:
        gateway.list_customers(request(query=f"limit={limit}"))
    assert "limit" in failure.value.errors
    gateway.customers.list_customers.assert_not_called()


def test_get_returns_an_etag_and_honours_if_none_match(make_gateway):
    gateway = make_gateway()
    gateway.customers.get_customer.return_value = CUSTOMER
    reply = gateway.get_customer(request(), customer_id="c-1")
    assert (reply.data, reply.headers["ETag"]) == (CUSTOMER, 'W/"3"')
    unchanged = gateway.get_customer(request(headers={"If-None-Match": 'W/"3"'}), customer_id="c-1")
    assert unchanged.status == 304 and unchanged.data is None


@pytest.mark.parametrize("if_match, expected", [('W/"3"', 3), ('"3"', 3), ("3", 3), (None, None), ("*", None)])
def test_patch_passes_if_match_as_expected_version(make_gateway, if_match, expected):
    gateway = make_gateway()
    gateway.customers.update_customer.return_value = dict(CUSTOMER, version=4)
    headers = {"If-Match": if_match} if if_match is not None else {}
    reply = gateway.update_customer(request("PATCH", headers=headers), customer_id="c-1", body={"tier": "A"})
    gateway.customers.update_customer.assert_called_once_with("c-1", {"tier": "A"}, expected)
    assert reply.headers["ETag"] == 'W/"4"'


def test_a_malformed_if_match_is_a_bad_request(make_gateway):
    gateway = make_gateway()
    with pytest.raises(BadRequest):
        gateway.delete_customer(request("DELETE", headers={"If-Match": "yesterday"}), customer_id="c-1")
    gateway.customers.delete_customer.assert_not_called()


def test_delete_passes_the_version(make_gateway):
    gateway = make_gateway()
    assert gateway.delete_customer(request("DELETE", headers={"If-Match": 'W/"7"'}), customer_id="c-1") is None
    gateway.customers.delete_customer.assert_called_once_with("c-1", 7)


def test_notifications_and_reports_are_proxied(make_gateway):
    gateway = make_gateway()
    gateway.notifications.list_notifications.return_value = {"items": [], "next_cursor": None}
    gateway.reporting.report.return_value = {"total": 0}
    assert gateway.list_notifications(request(query="limit=5&cursor=x"))["items"] == []
    gateway.notifications.list_notifications.assert_called_once_with(5, "x")
    assert gateway.customers_summary(request(query="tier=A")) == {"total": 0}
    gateway.reporting.report.assert_called_once_with("customers-summary", {"tier": "A"})


def test_login_and_me(make_gateway, session, passwords, access_tokens):
    user = UserDirectory(session, passwords).create(
        {"email": "ann@example.com", "name": "Ann", "role": "sales", "password": "x" * 12})
    session.commit()
    tokens = make_gateway().login(request("POST"), body={"email": "ann@example.com", "password": "x" * 12})
    assert set(tokens) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert access_tokens.verify(tokens["access_token"]).user_id == user.id
    me = make_gateway(user_id=user.id).me(request())
    assert me["email"] == "ann@example.com" and "password_hash" not in me


def test_create_user_answers_with_its_location(make_gateway):
    reply = make_gateway(role="admin").create_user(request("POST"), body={
        "email": "new@example.com", "name": "New", "role": "viewer", "password": "x" * 12})
    assert isinstance(reply, Reply)
    assert reply.headers["Location"] == f"/api/v1/users/{reply.data['id']}"
    assert "password" not in reply.data and "password_hash" not in reply.data
