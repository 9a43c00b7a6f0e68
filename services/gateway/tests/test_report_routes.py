"""The report routes: filters passed through as the caller, JSON or a file, user names, the
default pipeline of the funnel, and the admin's consistency check and rebuild."""
import json

import pytest
from nameko.rpc import rpc
from werkzeug.wrappers import Request

from crm_common.errors import ValidationFailed

from gateway.report_routes import add_user_names, answer_format, mentioned_users, report_filters
from gateway.service import GatewayService, openapi_json
from gateway_fakes import FakeReporting, FakeService
from gateway_support import assert_problem

REPORT_URLS = {
    "/api/v1/reports/customers/summary": "customers-summary",
    "/api/v1/reports/sales/by-period": "sales-by-period",
    "/api/v1/reports/sales/by-owner": "sales-by-owner",
    "/api/v1/reports/sales/by-product": "sales-by-product",
    "/api/v1/reports/sales/top-customers": "sales-top-customers",
    "/api/v1/reports/sales/forecast": "sales-forecast",
    "/api/v1/reports/activities": "activities",
    "/api/v1/reports/contracts": "contracts",
}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class FakePipelineSales(FakeService):
    name = "sales"

    @rpc
    def list_pipelines(self):
        self._record("list_pipelines")
        return {"items": [{"id": "p-default", "name": "Sales", "is_default": True, "stages": []},
                          {"id": "p-other", "name": "Another", "is_default": False, "stages": []}]}


class NamingReporting(FakeReporting):
    """A report naming users: an owner the gateway knows, and a user id it does not."""

    @rpc
    def report(self, name, filters=None):
        self._record("report", name, filters)
        return {"rows": [{"owner_id": filters["owner_id"], "revenue": "10.00"},
                         {"owner_id": None, "revenue": "5.00"}],
                "inactive_customers": {"items": [{"customer_id": "c-1", "owner_id": "nobody"}]},
                "followups": [{"user_id": filters["owner_id"], "count": 2}]}


def query(string):
    return Request.from_values(query_string=string)


# --- plain functions ----------------------------------------------------------------

def test_filters_pass_as_strings_a_repeated_one_as_a_list_and_never_the_format():
    assert report_filters(query("from=2026-01-01&region=east&region=west&format=csv&bogus=1")) == {
        "from": "2026-01-01", "region": ["east", "west"], "bogus": "1"}


@pytest.mark.parametrize("string, chosen", [("", "json"), ("format=", "json"), ("format=json", "json"),
                                            ("format=csv", "csv"), ("format=xlsx", "xlsx")])
def test_the_format_is_json_unless_a_file_is_asked_for(string, chosen):
    assert answer_format(query(string)) == chosen


@pytest.mark.parametrize("string", ["format=pdf", "format=csv&format=xlsx", "format=CSV"])
def test_any_other_format_is_refused_naming_it(string):
    with pytest.raises(ValidationFailed) as failure:
        answer_format(query(string))
    assert list(failure.value.errors) == ["format"]


def test_names_go_beside_every_owner_and_user_id_at_any_depth():
    answer = {"rows": [{"owner_id": "u-1"}, {"owner_id": None}],
              "inactive": {"items": [{"owner_id": "u-2"}]}, "followups": [{"user_id": "u-1"}]}
    assert mentioned_users(answer) == {"u-1", "u-2"}
    named = add_user_names(answer, {"u-1": "Ann"})
    assert named == {"rows": [{"owner_id": "u-1", "owner_name": "Ann"}, {"owner_id": None, "owner_name": None}],
                     "inactive": {"items": [{"owner_id": "u-2", "owner_name": None}]},
                     "followups": [{"user_id": "u-1", "user_name": "Ann"}]}


# --- over HTTP ----------------------------------------------------------------------

@pytest.mark.parametrize("url, name", REPORT_URLS.items())
def test_each_report_runs_as_the_caller_with_the_query_as_filters(gateway, admin_token, start_fake, fake_calls,
                                                                  url, name):
    start_fake(FakeReporting)
    _, token = gateway.create_user(admin_token, "sales", "east")
    response = gateway.get(url + "?from=2026-01-01&to=2026-06-30&team=east", token=token)
    assert response.status_code == 200, response.text
    call = fake_calls[-1]
    assert (call["method"], call["args"][:2]) == ("report", (name, {"from": "2026-01-01", "to": "2026-06-30",
                                                                    "team": "east"}))
    assert (call["context"]["user_role"], call["context"]["team_id"]) == ("sales", "east")


def test_json_answers_name_the_owners_and_users_from_the_gateways_users(gateway, admin_token, start_fake,
                                                                        fake_calls):
    start_fake(NamingReporting)
    owner, _ = gateway.create_user(admin_token, "sales", "east")
    body = gateway.get(f"/api/v1/reports/sales/by-owner?owner_id={owner['id']}", token=admin_token).json()
    assert [row["owner_name"] for row in body["rows"]] == [owner["name"], None]
    assert body["inactive_customers"]["items"][0]["owner_name"] is None
    assert body["followups"][0]["user_name"] == owner["name"]


@pytest.mark.parametrize("file_format, content_type", [("csv", "text/csv; charset=utf-8"), ("xlsx", XLSX)])
def test_csv_and_xlsx_are_file_downloads(gateway, admin_token, start_fake, fake_calls, file_format,
                                         content_type):
    start_fake(FakeReporting)
    response = gateway.get(f"/api/v1/reports/sales/by-period?format={file_format}&granularity=week",
                           token=admin_token)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Content-Disposition"] == \
        f'attachment; filename="sales-by-period-2026-01-01-2026-11-29.{file_format}"'
    assert response.headers["X-Total-Count"] == "1"
    assert response.content == b"\xef\xbb\xbfcurrency,revenue\r\nCNY,10.00\r\n"
    assert fake_calls[-1]["args"] == ("sales-by-period", {"granularity": "week"}, file_format)


def test_a_bad_format_is_422_naming_it_before_any_call(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeReporting)
    start_fake(FakePipelineSales)
    for url in list(REPORT_URLS) + ["/api/v1/reports/sales/funnel"]:
        body = assert_problem(gateway.get(url + "?format=pdf", token=admin_token), 422, "validation_failed")
        assert list(body["errors"]) == ["format"]
    assert fake_calls.methods() == []


def test_the_services_refusal_of_a_filter_reaches_the_caller(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeReporting)
    body = assert_problem(gateway.get("/api/v1/reports/contracts?colour=red", token=admin_token), 422,
                          "validation_failed")
    assert list(body["errors"]) == ["colour"]


def test_the_funnel_without_a_pipeline_is_the_default_pipelines(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeReporting)
    start_fake(FakePipelineSales)
    assert gateway.get("/api/v1/reports/sales/funnel?from=2026-01-01", token=admin_token).status_code == 200
    assert fake_calls[-1]["args"] == ("sales-funnel", {"from": "2026-01-01", "pipeline": "p-default"})
    gateway.get("/api/v1/reports/sales/funnel?pipeline=p-other&format=csv", token=admin_token)
    # Sales was asked once: for the request that named no pipeline.
    assert fake_calls.methods() == ["list_pipelines", "report", "export_report"]
    assert fake_calls[-1]["args"] == ("sales-funnel", {"pipeline": "p-other"}, "csv")


def test_consistency_and_rebuild_are_for_admins(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeReporting)
    assert gateway.get("/api/v1/reports/consistency", token=admin_token).json()["consistent"] is True
    started = gateway.post("/api/v1/reports/rebuild", token=admin_token)
    assert started.status_code == 202, started.text
    assert started.headers["Location"] == "/api/v1/reports/rebuild/run-1"
    assert started.json()["status"] == "running"
    assert gateway.get(started.headers["Location"], token=admin_token).json()["status"] == "done"
    assert_problem(gateway.get("/api/v1/reports/rebuild/run-9", token=admin_token), 404, "not_found")
    _, manager = gateway.create_user(admin_token, "manager", "east")
    calls = len(fake_calls)
    assert_problem(gateway.get("/api/v1/reports/consistency", token=manager), 403, "forbidden")
    assert_problem(gateway.post("/api/v1/reports/rebuild", token=manager), 403, "forbidden")
    assert_problem(gateway.get("/api/v1/reports/rebuild/run-1", token=manager), 403, "forbidden")
    assert len(fake_calls) == calls


def test_the_document_offers_each_report_as_json_csv_and_xlsx():
    paths = json.loads(openapi_json(GatewayService))["paths"]
    for url in list(REPORT_URLS) + ["/api/v1/reports/sales/funnel"]:
        operation = paths[url]["get"]
        assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/csv", XLSX}
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        names = {parameter["name"] for parameter in operation["parameters"] if parameter["in"] == "query"}
        assert "format" in names
        assert url.endswith("/contracts") or {"from", "to"} <= names
    assert paths["/api/v1/reports/rebuild"]["post"]["x-roles"] == ["admin"]
    assert "202" in paths["/api/v1/reports/rebuild"]["post"]["responses"]
