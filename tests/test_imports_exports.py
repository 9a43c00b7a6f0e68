"""Importing and exporting customers end to end: real multipart uploads and file downloads over HTTP."""
import csv
import io
import json
import secrets

from openpyxl import load_workbook

from conftest import wait_until

PROBLEM = "application/problem+json"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def upload(api, content, filename="customers.csv", **form):
    if "mapping" in form:
        form["mapping"] = json.dumps(form["mapping"], ensure_ascii=False)
    return api.post("/imports/customers", files={"file": (filename, content, "text/csv")}, data=form, timeout=60)


def csv_file(header, rows, encoding="utf-8-sig"):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode(encoding)


def mobile(n, run):
    """A valid Chinese mobile number, unique to this test run."""
    return f"+86 137 {run:04d} {n:04d}"


def read_csv(response):
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


HEADER = ["编号", "客户名称", "手机", "邮箱", "标签", "公司"]
MAPPING = {"编号": "external_id", "客户名称": "name", "手机": "phones", "邮箱": "emails", "标签": "tags",
           "公司": "company.name"}


def test_a_small_gbk_import_answers_with_its_report_and_is_idempotent(system, make_user):
    rep = make_user("sales")
    run, tag = secrets.randbelow(10000), "imp" + secrets.token_hex(3)
    rows = [
        [f"S-{run}-1", "张三", mobile(1, run), f"zhang{run}@e2e.example", f"{tag}；vip", "上海贸易"],
        [f"S-{run}-2", "Li Lei", mobile(2, run), "", tag, ""],
        [f"S-{run}-3", "Bad Phone", "12", "", tag, ""],
    ]
    content = csv_file(HEADER, rows, encoding="gbk")

    dry = upload(rep, content, mapping=MAPPING)
    assert dry.status_code == 201, dry.text
    assert dry.json()["dry_run"] is True and dry.json()["report"]["created"] == 2
    assert rep.get("/customers", params={"tag": tag}).json()["items"] == []

    response = upload(rep, content, mapping=MAPPING, dry_run="false")
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "done" and response.headers["Location"].endswith(f"/imports/{job['id']}")
    report = job["report"]
    assert (report["rows_read"], report["created"], report["rejected_count"]) == (3, 2, 1)
    assert report["rejected"] == [{"row": 4, "field": "phones", "column": "手机",
                                   "reason": report["rejected"][0]["reason"]}]
    assert "'12'" in report["rejected"][0]["reason"]
    listed = rep.get("/customers", params={"tag": tag}).json()["items"]
    assert sorted(c["name"] for c in listed) == ["Li Lei", "张三"]
    assert all(c["owner_id"] == rep.user["id"] for c in listed)
    zhang = next(c for c in listed if c["name"] == "张三")
    assert zhang["company"]["name"] == "上海贸易" and sorted(zhang["tags"]) == sorted([tag, "vip"])
    history = rep.get(f"/customers/{zhang['id']}/history").json()["items"]
    assert [entry["action"] for entry in history] == ["imported"]

    again = upload(rep, content, mapping=MAPPING, dry_run="false", on_duplicate="create")
    assert again.json()["report"]["created"] == 0 and again.json()["report"]["skipped"] == 2
    assert len(rep.get("/customers", params={"tag": tag}).json()["items"]) == 2


def test_bad_imports_are_clear_4xx_problems(system, make_user):
    rep, viewer = make_user("sales"), make_user("viewer")
    content = csv_file(HEADER, [["x", "Name", mobile(9, 9999), "", "", ""]])
    bad_mapping = upload(rep, content, mapping={"Nope": "name"})
    assert bad_mapping.status_code == 422 and bad_mapping.headers["Content-Type"].startswith(PROBLEM)
    assert "mapping" in bad_mapping.json()["errors"]
    bad_file = upload(rep, b"\x00\x01 not a table", mapping=MAPPING)
    assert bad_file.status_code == 422 and "file" in bad_file.json()["errors"]
    assert upload(viewer, content, mapping=MAPPING).status_code == 403


def test_a_large_import_runs_as_a_job_polled_to_done_and_only_its_owner_sees_it(system, make_user):
    rep, other = make_user("sales"), make_user("sales")
    run, tag = secrets.randbelow(10000), "job" + secrets.token_hex(3)
    rows = [[f"J-{run}-{n}", f"Job Customer {n}", mobile(n, run), "", tag, ""] for n in range(600)]
    response = upload(rep, csv_file(HEADER, rows), mapping=MAPPING, dry_run="false")
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    location = response.headers["Location"].removeprefix("/api/v1")

    def finished():
        job = rep.get(location).json()
        return job if job["status"] in ("done", "failed") else None

    job = wait_until(finished, 60, interval=0.25, message="the import job to finish")
    assert job["status"] == "done", job
    assert (job["total_rows"], job["done_rows"]) == (600, 600)
    assert job["report"]["created"] == 600 and job["report"]["rejected_count"] == 0
    exported = rep.get("/exports/customers", params={"tag": tag}, timeout=60)
    assert len(read_csv(exported)) == 600

    not_yours = other.get(location)
    assert not_yours.status_code == 404 and not_yours.headers["Content-Type"].startswith(PROBLEM)


def test_exports_hold_only_what_the_caller_may_see_and_re_import_unchanged(system, make_user, admin):
    alice, bob = make_user("sales"), make_user("sales", team_id="west")
    run, tag = secrets.randbelow(10000), "exp" + secrets.token_hex(3)
    created = alice.post("/customers", json={
        "kind": "company", "name": f"=HYPERLINK(\"http://x\") {tag}", "tags": [tag, "华东"], "tier": "B",
        "company": {"name": "阿克米", "industry": "IT", "size": "10-49"},
        "contact": {"phones": [mobile(1, run)], "emails": [f"a{run}@e2e.example"],
                    "address": {"city": "上海", "postcode": "200000"}},
        "notes": "line one\nline two"})
    assert created.status_code == 201, created.text
    assert bob.post("/customers", json={"kind": "person", "name": f"Bob's {tag}", "tags": [tag],
                                        "contact": {"phones": [mobile(2, run)]}}).status_code == 201

    exported = alice.get("/exports/customers", params={"tag": tag, "format": "csv"})
    assert exported.status_code == 200, exported.text
    assert exported.headers["Content-Type"].startswith("text/csv")
    assert exported.headers["Content-Disposition"].startswith('attachment; filename="customers-')
    assert exported.content.startswith(b"\xef\xbb\xbf")
    rows = read_csv(exported)
    assert [row["id"] for row in rows] == [created.json()["id"]]
    # Text a spreadsheet would evaluate (a formula, or +86... as a number) gets a leading apostrophe.
    assert rows[0]["name"].startswith("'=HYPERLINK") and rows[0]["phones"] == "'" + mobile(1, run).replace(" ", "")

    workbook = alice.get("/exports/customers", params={"tag": tag, "format": "xlsx"})
    assert workbook.status_code == 200 and workbook.headers["Content-Type"] == XLSX_TYPE
    sheet = load_workbook(io.BytesIO(workbook.content), read_only=True).worksheets[0]
    values = list(sheet.iter_rows(values_only=True))
    assert len(values) == 2 and values[1][0] == created.json()["id"]

    # The admin sees both; a viewer may export too.
    assert len(read_csv(admin.get("/exports/customers", params={"tag": tag}))) == 2
    viewer = make_user("viewer")
    assert viewer.get("/exports/customers", params={"tag": tag}).status_code == 200

    # The exported file imports back as it is (no mapping): every value survives, nothing changes.
    for response in (exported, workbook):
        name = "back.csv" if response is exported else "back.xlsx"
        back = upload(alice, response.content, filename=name, dry_run="false", on_duplicate="update")
        assert back.status_code == 201, back.text
        assert back.json()["report"] == {"rows_read": 1, "created": 0, "updated": 0, "skipped": 1, "rejected": [],
                                         "rejected_count": 0, "dry_run": False}
    fetched = alice.get(f"/customers/{created.json()['id']}").json()
    assert fetched["version"] == 1 and fetched["notes"] == "line one\nline two"
