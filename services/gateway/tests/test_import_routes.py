"""The import and export routes: multipart uploads, their limits, and file downloads."""
import base64
import json

from nameko.rpc import rpc

from crm_common.errors import ValidationFailed

from gateway.service import GatewayService, openapi_json
from gateway_fakes import FakeService
from gateway_support import assert_problem

CSV = "name,email\n张三,z@x.cn\n".encode("utf-8")


class FakeImportingCustomers(FakeService):
    """Answers like the customers service: a job for each upload, a file for each export."""

    name = "customers"

    @rpc
    def import_customers(self, content_base64, filename, options, owner_teams=None):
        self._record("import_customers", base64.b64decode(content_base64), filename, options, owner_teams)
        if "mapping" in options and not isinstance(options["mapping"], dict):
            raise ValidationFailed("The input is not valid.", {"mapping": ["Not a valid mapping."]})
        large = filename == "large.csv"
        return {"id": "job-1", "status": "queued" if large else "done", "filename": filename,
                "report": None if large else {"rows_read": 1, "created": 1}}

    @rpc
    def get_import(self, job_id):
        self._record("get_import", job_id)
        return {"id": job_id, "status": "running", "done_rows": 1000, "total_rows": 5000}

    @rpc
    def export_customers(self, filters=None, options=None):
        self._record("export_customers", filters, options)
        return {"filename": "customers-20261129.csv", "content_type": "text/csv; charset=utf-8",
                "content": base64.b64encode(b"\xef\xbb\xbfid,name\r\n").decode(), "rows": 0}


def upload(gateway, token, content=CSV, filename="small.csv", **form):
    return gateway.post("/api/v1/imports/customers", token=token,
                        files={"file": (filename, content, "text/csv")}, data=form)


def test_a_small_upload_answers_201_with_the_job_and_passes_file_options_and_owner_teams(
        gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeImportingCustomers)
    response = upload(gateway, admin_token, mapping=json.dumps({"name": "name"}), dry_run="false",
                      on_duplicate="update")
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == "/api/v1/imports/job-1"
    assert response.json()["report"]["created"] == 1
    call = fake_calls[-1]
    content, filename, options, owner_teams = call["args"]
    assert (content, filename) == (CSV, "small.csv")
    assert options == {"mapping": {"name": "name"}, "dry_run": "false", "on_duplicate": "update"}
    # The admin may name any user as owner: the service gets every user's team.
    assert list(owner_teams.values()) == [None] and call["context"]["user_role"] == "admin"


def test_a_large_upload_answers_202_and_its_job_can_be_polled(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeImportingCustomers)
    response = upload(gateway, admin_token, filename="large.csv")
    assert response.status_code == 202, response.text
    polled = gateway.get(response.headers["Location"], token=admin_token)
    assert polled.status_code == 200 and polled.json()["done_rows"] == 1000


def test_sales_users_may_name_only_themselves_as_owner(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeImportingCustomers)
    user, token = gateway.create_user(admin_token, "sales", "east")
    assert upload(gateway, token).status_code == 201
    assert fake_calls[-1]["args"][3] == {user["id"]: "east"}


def test_bad_uploads_name_the_field(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeImportingCustomers)
    no_file = gateway.post("/api/v1/imports/customers", token=admin_token, data={"mapping": "{}"})
    assert assert_problem(no_file, 422, "validation_failed")["errors"] == {
        "file": ["Missing: send the file as 'file'."]}
    bad_json = upload(gateway, admin_token, mapping="{name: name")
    assert "mapping" in assert_problem(bad_json, 422, "validation_failed")["errors"]
    as_json = gateway.post("/api/v1/imports/customers", token=admin_token, json={"file": "x"})
    assert_problem(as_json, 400, "bad_request")
    assert "import_customers" not in fake_calls.methods()


def test_uploads_above_50_mb_are_413_while_a_few_mb_pass(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeImportingCustomers)
    assert upload(gateway, admin_token, content=b"x" * (3 * 1024 * 1024)).status_code == 201
    too_large = upload(gateway, admin_token, content=b"x" * (50 * 1024 * 1024 + 1))
    assert_problem(too_large, 413, "payload_too_large")


def test_viewers_may_export_but_not_import(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeImportingCustomers)
    _, viewer = gateway.create_user(admin_token, "viewer")
    assert_problem(upload(gateway, viewer), 403, "forbidden")
    response = gateway.get("/api/v1/exports/customers?format=csv&tag=vip&tag=east&tier=A&sort=name", token=viewer)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"] == 'attachment; filename="customers-20261129.csv"'
    assert response.content.startswith(b"\xef\xbb\xbfid,name")
    filters, options = fake_calls[-1]["args"]
    assert filters == {"tag": ["vip", "east"], "tier": "A"}
    assert options == {"format": "csv", "sort": "name"}


def test_the_upload_and_the_download_are_documented():
    doc = json.loads(openapi_json(GatewayService))
    post = doc["paths"]["/api/v1/imports/customers"]["post"]
    form = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form == {"$ref": "#/components/schemas/ImportUploadForm"}
    schema = doc["components"]["schemas"]["ImportUploadForm"]
    assert schema["properties"]["file"]["format"] == "binary" and schema["required"] == ["file"]
    assert schema["properties"]["dry_run"]["default"] is True
    assert {"201", "202", "413", "422", "403"} <= set(post["responses"])
    export = doc["paths"]["/api/v1/exports/customers"]["get"]
    assert set(export["responses"]["200"]["content"]) == {
        "text/csv", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
    assert {"format", "tag", "q", "sort"} <= {p["name"] for p in export["parameters"]}
    assert "limit" not in {p["name"] for p in export["parameters"]}
