"""Importing customers from files and exporting them: the rules a user relies on."""
import base64
import csv
import io
import json
from datetime import timedelta
from functools import partial

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import func, select

from crm_common.db import make_session_factory
from crm_common.errors import Forbidden, NotFound, ValidationFailed
from crm_common.audit import AUDIT_EVENT
from crm_common.outbox import outbox_table
from crm_common.types import utcnow

from crm_common import tabular
from customers import imports
from customers.domain import CustomerBook
from customers.exports import CustomerExport
from customers.custom_fields import CustomFieldCatalogue
from customers.models import Customer, CustomerHistory, CustomerIdentifier, CustomerTag, ImportJob, ImportJobEvent
from customers.service import CustomersService

from conftest import ALICE, BOB

MAPPING = {"ID": "external_id", "Name": "name", "Phone": "phones", "Email": "emails", "Tags": "tags",
           "Company": "company.name", "City": "address.city", "Tier": "tier"}
HEADER = list(MAPPING)


def csv_bytes(rows, header=HEADER, encoding="utf-8"):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode(encoding)


def run_import(session, context, rows, dry_run=False, on_duplicate="skip", mapping=MAPPING, **kwargs):
    content = rows if isinstance(rows, bytes) else csv_bytes(rows)
    job = imports.Imports(session, context).start(
        content, "customers.csv", {"mapping": mapping, "dry_run": dry_run, "on_duplicate": on_duplicate}, **kwargs)
    session.commit()
    return job


def count(session, model_or_table):
    return session.execute(select(func.count()).select_from(model_or_table)).scalar()


def customers_by_name(session):
    return {c.name: c for c in session.execute(select(Customer)).scalars()}


def events(session):
    """The outbox's events but the audit trail's (crm_common.audit: one entry per job)."""
    return [json.loads(row.payload) for row in session.execute(select(outbox_table).where(
        outbox_table.c.event_type != AUDIT_EVENT).order_by(outbox_table.c.id))]


ANN = ["E1", "Ann Lee", "13800138000", "ann@acme.cn", "vip; 华东", "Acme", "Shanghai", "A"]
BOB_ROW = ["E2", "王伟", "+86 139 0013 9000", "wang@x.cn", "", "", "", ""]


# --- mapping and options ----------------------------------------------------

@pytest.mark.parametrize("mapping, message", [
    ({"Nope": "name"}, "No column 'Nope'"),
    ({"Name": "favourite_colour"}, "not a field you can import"),
    ({"Name": "name", "Company": "name"}, "both mapped to 'name'"),
    ({}, "at least one column"),
    ({"Name": "custom.Bad Key"}, "not a field you can import"),
], ids=["column not in file", "unknown field", "two columns one field", "empty", "bad custom key"])
def test_a_bad_mapping_is_a_422_naming_mapping_and_writes_nothing(session, as_alice, mapping, message):
    with pytest.raises(ValidationFailed) as raised:
        run_import(session, as_alice, [ANN], mapping=mapping)
    assert list(raised.value.errors) == ["mapping"]
    assert any(message in text for text in raised.value.errors["mapping"])
    assert count(session, Customer) == 0 and count(session, ImportJob) == 0


def test_bad_options_and_files_name_their_field(session, as_alice):
    with pytest.raises(ValidationFailed) as raised:
        run_import(session, as_alice, [ANN], on_duplicate="merge")
    assert "on_duplicate" in raised.value.errors
    with pytest.raises(ValidationFailed) as raised:
        run_import(session, as_alice, b"\x00\x00binary")
    assert list(raised.value.errors) == ["file"]


def test_dry_run_is_the_default_and_writes_nothing(session, as_alice):
    job = imports.Imports(session, as_alice).start(csv_bytes([ANN, BOB_ROW]), "c.csv", {"mapping": MAPPING})
    session.commit()
    assert job["dry_run"] is True
    assert job["report"] == {"rows_read": 2, "created": 2, "updated": 0, "skipped": 0, "rejected": [],
                             "rejected_count": 0, "dry_run": True}
    assert count(session, Customer) == 0 and count(session, CustomerTag) == 0
    assert count(session, CustomerHistory) == 0 and count(session, outbox_table) == 0


def test_viewers_may_not_import(session, as_viewer):
    with pytest.raises(Forbidden):
        run_import(session, as_viewer, [ANN])


# --- what an import writes ----------------------------------------------------

def test_imported_customers_carry_every_mapped_field_the_importer_and_publish_like_create(session, as_alice):
    job = run_import(session, as_alice, [ANN, BOB_ROW])
    assert job["status"] == "done" and job["report"]["created"] == 2
    ann = customers_by_name(session)["Ann Lee"]
    assert ann.external_id == "E1" and ann.kind == "person" and ann.tier == "A"
    assert ann.contact["phones"] == ["+8613800138000"] and ann.contact["emails"] == ["ann@acme.cn"]
    assert ann.contact["address"] == {"city": "Shanghai"} and ann.company == {"name": "Acme"}
    assert ann.tags == ["vip", "华东"]
    assert ann.owner_id == ALICE and ann.created_by == ALICE and ann.owner_team_id == "east"
    # Found by search and by exact phone, like a customer created by hand.
    book = CustomerBook(session, as_alice)
    assert [c["name"] for c in book.list({"q": "acme"})["items"]] == ["Ann Lee"]
    assert [c["name"] for c in book.list({"phone": "+86 139 0013 9000"})["items"]] == ["王伟"]
    history = session.execute(select(CustomerHistory).where(CustomerHistory.customer_id == ann.id)).scalars().all()
    assert [(h.action, h.actor_id) for h in history] == [("imported", ALICE)]
    assert history[0].changes["name"] == {"old": None, "new": "Ann Lee"}
    # One customer.imported per batch carries every new customer as customer.created would.
    published = events(session)
    assert [e["type"] for e in published] == ["customer.imported"]
    assert published[0]["actor"]["user_id"] == ALICE
    imported = published[0]["data"]["customers"]
    assert [c["name"] for c in imported] == ["Ann Lee", "王伟"]
    assert imported[0]["id"] == ann.id and imported[0]["owner_id"] == ALICE
    assert imported[0]["version"] == 1 and imported[0]["tags"] == ["vip", "华东"]


def test_a_gbk_file_imports(session, as_alice):
    job = run_import(session, as_alice, csv_bytes([BOB_ROW], encoding="gbk"))
    assert job["report"]["created"] == 1
    assert "王伟" in customers_by_name(session)


def test_an_xlsx_file_imports(session, as_alice):
    content = tabular.write_xlsx(HEADER, [ANN])
    job = run_import(session, as_alice, content)
    assert job["file_format"] == "xlsx" and job["report"]["created"] == 1


def test_rejected_rows_name_row_field_and_reason_and_leave_nothing_behind(session, as_alice):
    rows = [
        ANN,
        ["E3", "No Way To Reach", "", "", "vip", "", "", ""],
        ["E4", "Bad Phone", "12", "bad@x.cn", "vip", "", "", "Z"],
        ["E5", "Bad Mail", "", "not-an-email", "", "", "", ""],
    ]
    job = run_import(session, as_alice, rows)
    report = job["report"]
    assert (report["created"], report["rejected_count"]) == (1, 3)
    rejected = {(entry["row"], entry["field"]) for entry in report["rejected"]}
    assert rejected == {(3, "contact"), (4, "phones"), (4, "tier"), (5, "emails")}
    phone_error = next(e for e in report["rejected"] if e["field"] == "phones")
    assert phone_error["column"] == "Phone" and "'12'" in phone_error["reason"]
    assert set(customers_by_name(session)) == {"Ann Lee"}
    # Nothing of a rejected row: no tags, identifiers, history or events.
    assert count(session, CustomerTag) == 2 and count(session, CustomerHistory) == 1
    assert count(session, CustomerIdentifier) == 2
    assert [len(e["data"]["customers"]) for e in events(session)] == [1]


def test_sales_users_import_only_for_themselves(session, as_alice):
    mapping = {**MAPPING, "Owner": "owner_id"}
    job = run_import(session, as_alice, csv_bytes([ANN + [BOB]], header=HEADER + ["Owner"]), mapping=mapping)
    assert job["report"]["rejected"][0]["field"] == "owner_id"
    assert count(session, Customer) == 0


def test_admins_import_for_other_users_who_get_their_team(session, as_admin):
    mapping = {**MAPPING, "Owner": "owner_id"}
    unknown = "00000000-0000-4000-8000-000000000999"
    content = csv_bytes([ANN + [BOB], BOB_ROW + [unknown]], header=HEADER + ["Owner"])
    job = run_import(session, as_admin, content, mapping=mapping, owner_teams={BOB: "west"})
    assert job["report"]["created"] == 1
    assert job["report"]["rejected"] == [{"row": 3, "field": "owner_id", "column": "Owner", "reason": "Unknown user."}]
    ann = customers_by_name(session)["Ann Lee"]
    assert (ann.owner_id, ann.owner_team_id, ann.created_by) == (BOB, "west", as_admin.user_id)


def test_custom_fields_are_converted_to_their_type_and_checked(session, as_admin):
    catalogue = CustomFieldCatalogue(session, as_admin)
    catalogue.define({"key": "employees", "label": "Employees", "type": "number"})
    catalogue.define({"key": "partner", "label": "Partner", "type": "boolean"})
    mapping = {"Name": "name", "Email": "emails", "Staff": "custom.employees", "Partner": "custom.partner"}
    content = csv_bytes([["Ann", "a@x.cn", "1,200", "是"], ["Bob", "b@x.cn", "many", "no"]],
                        header=["Name", "Email", "Staff", "Partner"])
    job = run_import(session, as_admin, content, mapping=mapping)
    assert customers_by_name(session)["Ann"].custom_fields == {"employees": 1200, "partner": True}
    assert [(e["row"], e["field"]) for e in job["report"]["rejected"]] == [(3, "custom.employees")]


# --- duplicates ----------------------------------------------------------------

def existing(session, context):
    book = CustomerBook(session, context)
    customer = book.create({"kind": "person", "name": "Ann Lee", "contact": {"phones": ["13800138000"]},
                            "tier": "C"})
    session.commit()
    return customer


def test_skip_leaves_a_duplicate_alone(session, as_alice):
    before = existing(session, as_alice)
    job = run_import(session, as_alice, [ANN], on_duplicate="skip")
    assert (job["report"]["created"], job["report"]["skipped"]) == (0, 1)
    ann = session.get(Customer, before["id"])
    assert ann.tier == "C" and ann.version == 1


def test_update_changes_the_match_and_records_the_fields(session, as_alice):
    before = existing(session, as_alice)
    job = run_import(session, as_alice, [ANN], on_duplicate="update")
    assert (job["report"]["created"], job["report"]["updated"]) == (0, 1)
    assert count(session, Customer) == 1
    ann = session.get(Customer, before["id"])
    assert ann.tier == "A" and ann.external_id == "E1" and ann.version == 2
    assert ann.contact["emails"] == ["ann@acme.cn"] and ann.contact["address"] == {"city": "Shanghai"}
    history = session.execute(select(CustomerHistory).where(CustomerHistory.customer_id == ann.id)
                              .order_by(CustomerHistory.id)).scalars().all()
    assert history[-1].action == "updated" and history[-1].changes["tier"] == {"old": "C", "new": "A"}
    assert events(session)[-1]["type"] == "customer.updated"


def test_create_makes_a_second_record_anyway(session, as_alice):
    existing(session, as_alice)
    job = run_import(session, as_alice, [ANN], on_duplicate="create")
    assert job["report"]["created"] == 1
    assert count(session, Customer) == 2


@pytest.mark.parametrize("policy", ["skip", "update", "create"])
def test_running_an_import_again_creates_nothing_whatever_the_policy(session, as_alice, policy):
    run_import(session, as_alice, [ANN, BOB_ROW])
    again = run_import(session, as_alice, [ANN, BOB_ROW], on_duplicate=policy)
    assert again["report"]["created"] == 0 and again["report"]["skipped"] == 2
    assert count(session, Customer) == 2


def test_an_external_id_matches_even_when_everything_else_changed(session, as_alice):
    run_import(session, as_alice, [ANN])
    renamed = ["E1", "Ann Lee-Smith", "13900000001", "", "", "", "", "B"]
    job = run_import(session, as_alice, [renamed], on_duplicate="create")
    assert job["report"]["created"] == 0
    job = run_import(session, as_alice, [renamed], on_duplicate="update")
    assert job["report"]["updated"] == 1
    assert set(customers_by_name(session)) == {"Ann Lee-Smith"}


def test_duplicates_within_one_file_count_too(session, as_alice):
    same_phone = ["", "Ann L.", "+86 138 0013 8000", "", "", "", "", "B"]
    same_external = ["E1", "Ann Again", "", "other@x.cn", "", "", "", ""]
    job = run_import(session, as_alice, [ANN, same_phone, same_external], on_duplicate="skip")
    assert (job["report"]["created"], job["report"]["skipped"]) == (1, 2)

    session.execute(CustomerHistory.__table__.delete())
    session.execute(CustomerTag.__table__.delete())
    session.execute(CustomerIdentifier.__table__.delete())
    session.execute(Customer.__table__.delete())
    job = run_import(session, as_alice, [ANN, same_phone], on_duplicate="update")
    assert (job["report"]["created"], job["report"]["updated"]) == (1, 1)
    assert [c.tier for c in customers_by_name(session).values()] == ["B"]


# --- large imports as jobs ---------------------------------------------------------

def big_file(rows):
    return csv_bytes([[f"X{n}", f"Customer {n}", "", f"c{n}@big.example", "bulk", "", "", ""]
                      for n in range(rows)] + [["X-bad", "Bad", "", "nope", "", "", "", ""]])


def test_a_large_file_becomes_a_job_that_runs_in_committed_chunks(session, as_alice):
    job = run_import(session, as_alice, big_file(1200))
    assert job["status"] == "queued" and job["done_rows"] == 0 and job["report"] is None
    assert count(session, Customer) == 0

    factory = make_session_factory(session.get_bind())
    assert imports.run_queued_jobs(factory) == 1
    with factory() as check:
        stored = check.get(ImportJob, job["id"])
        assert stored.status == "done" and stored.content is None
        assert (stored.total_rows, stored.done_rows) == (1201, 1201)
        assert stored.report["created"] == 1200 and stored.report["rejected_count"] == 1
        assert stored.report["rejected"][0]["row"] == 1202
        assert count(check, Customer) == 1200
        payloads = [json.loads(p) for p in check.execute(select(outbox_table.c.payload).where(
            outbox_table.c.event_type != AUDIT_EVENT)).scalars()]
        assert sum(len(p["data"]["customers"]) for p in payloads) == 1200 and len(payloads) == 3
    assert imports.run_queued_jobs(factory) == 0


def held_and_published(factory):
    with factory() as check:
        return count(check, ImportJobEvent), len(events(check))


def test_a_job_holds_its_events_until_it_ends_then_publishes_them_in_file_order(session, as_alice):
    job = run_import(session, as_alice, big_file(2500))
    factory = make_session_factory(session.get_bind())
    seen = []

    class WatchingPreparer(imports.InlinePreparer):
        def map(self, fields, owner_teams, chunks):
            for prepared in super().map(fields, owner_teams, chunks):
                seen.append(held_and_published(factory))
                yield prepared

    job_id = imports.claim_next_job(factory)
    imports.run_job(factory, job_id, preparer=partial(WatchingPreparer, factory))
    # While the job ran, the written chunks' events waited beside them, none in the outbox.
    assert seen[1] == (2, 0) and seen[2] == (4, 0)
    assert held_and_published(factory) == (0, 5)
    with factory() as check:
        payloads = events(check)
    names = [c["name"] for p in payloads for c in p["data"]["customers"]]
    assert names == [f"Customer {n}" for n in range(2500)]


def test_a_job_that_fails_midway_publishes_the_events_of_what_it_wrote(session, as_alice, monkeypatch):
    job = run_import(session, as_alice, big_file(2500))
    factory = make_session_factory(session.get_bind())
    real_plan = imports.Importer.plan
    calls = []

    def plan_then_break(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return real_plan(self, *args, **kwargs)

    monkeypatch.setattr(imports.Importer, "plan", plan_then_break)
    imports.run_job(factory, imports.claim_next_job(factory))
    with factory() as check:
        assert check.get(ImportJob, job["id"]).status == "failed"
        assert count(check, Customer) == 2000
    assert held_and_published(factory) == (0, 4)


def test_a_job_whose_process_died_publishes_the_events_it_held(session, as_alice):
    job = run_import(session, as_alice, big_file(600))
    factory = make_session_factory(session.get_bind())
    job_id = imports.claim_next_job(factory)
    with factory() as writing:
        importer = imports.Importer(as_alice, HEADER, MAPPING, "skip", False)
        importer.hold_events_for = job_id
        importer.run_chunk(writing, [(2, ["X1", "Held", "", "held@big.example", "", "", "", ""])])
        writing.commit()
    assert held_and_published(factory) == (1, 0)
    assert imports.fail_unfinished(factory, job_id, "The import process stopped unexpectedly.")
    assert held_and_published(factory) == (0, 1)
    assert session.get(ImportJob, job["id"]) is not None


def test_a_queued_job_is_claimed_once(session, as_alice):
    job = run_import(session, as_alice, big_file(600))
    factory = make_session_factory(session.get_bind())
    assert imports.claim_next_job(factory) == job["id"]
    assert imports.claim_next_job(factory) is None


def test_a_job_whose_process_died_is_failed_with_advice_and_a_live_one_is_left_alone(session, as_alice):
    dead = run_import(session, as_alice, big_file(600))
    live = run_import(session, as_alice, big_file(700))
    factory = make_session_factory(session.get_bind())
    assert {imports.claim_next_job(factory), imports.claim_next_job(factory)} == {dead["id"], live["id"]}
    long_ago = utcnow() - timedelta(hours=1)
    session.execute(ImportJob.__table__.update().where(ImportJob.id == dead["id"]).values(
        started_at=long_ago, heartbeat_at=long_ago))
    session.execute(ImportJob.__table__.update().where(ImportJob.id == live["id"]).values(heartbeat_at=utcnow()))
    session.commit()
    assert imports.fail_abandoned_jobs(factory) == 1
    session.expire_all()
    assert session.get(ImportJob, dead["id"]).status == "failed"
    assert "Run the file again" in session.get(ImportJob, dead["id"]).error
    assert session.get(ImportJob, live["id"]).status == "running"


def test_a_dry_run_job_reports_and_writes_nothing(session, as_alice):
    job = run_import(session, as_alice, big_file(1100) + b"X1,Customer 1 again,,c1b@big.example,,,,\n",
                     dry_run=True, on_duplicate="update")
    factory = make_session_factory(session.get_bind())
    imports.run_queued_jobs(factory)
    with factory() as check:
        report = check.get(ImportJob, job["id"]).report
        assert (report["created"], report["updated"], report["rejected_count"]) == (1100, 1, 1)
        assert count(check, Customer) == 0 and count(check, outbox_table) == 0


def test_a_job_that_cannot_finish_fails_with_a_readable_error(session, as_alice):
    job = run_import(session, as_alice, big_file(600))
    session.execute(ImportJob.__table__.update().values(content=b"\x00garbage"))
    session.commit()
    imports.run_queued_jobs(make_session_factory(session.get_bind()))
    session.expire_all()
    failed = session.get(ImportJob, job["id"])
    assert failed.status == "failed" and "not a CSV or XLSX" in failed.error and failed.content is None


def test_only_the_creator_and_admins_see_a_job(session, as_alice, as_bob, as_admin):
    job = run_import(session, as_alice, [ANN])
    assert imports.Imports(session, as_alice).get(job["id"])["report"]["created"] == 1
    assert imports.Imports(session, as_admin).get(job["id"])["id"] == job["id"]
    with pytest.raises(NotFound):
        imports.Imports(session, as_bob).get(job["id"])


# --- exports -----------------------------------------------------------------------

def export(session, context, filters=None, file_format="csv"):
    result = CustomerExport(session, context).render(filters, {"format": file_format})
    table = tabular.read_table(base64.b64decode(result["content"]))
    return result, table.header, [values for _, values in table.rows()]


def test_export_holds_only_what_the_caller_may_see(session, as_alice, as_bob):
    run_import(session, as_alice, [ANN])
    run_import(session, as_bob, [BOB_ROW])
    result, header, rows = export(session, as_alice)
    assert result["filename"].startswith("customers-") and result["filename"].endswith(".csv")
    assert result["rows"] == 1 and [row[header.index("name")] for row in rows] == ["Ann Lee"]
    assert {"id", "owner_id", "created_at", "updated_at", "company.name", "address.city"} <= set(header)


def test_export_takes_the_list_filters(session, as_admin):
    run_import(session, as_admin, [ANN, BOB_ROW])
    _, header, rows = export(session, as_admin, {"tag": "vip"}, "xlsx")
    assert [row[header.index("name")] for row in rows] == ["Ann Lee"]
    with pytest.raises(ValidationFailed):
        export(session, as_admin, {"tier": "Z"})


def test_export_neutralises_formulas(session, as_alice):
    CustomerBook(session, as_alice).create({"kind": "company", "name": "=HYPERLINK(\"http://evil\")"})
    result = CustomerExport(session, as_alice).render({}, {"format": "csv"})
    text = base64.b64decode(result["content"]).decode("utf-8-sig")
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_an_exported_file_imports_back_unchanged(session, as_admin, file_format):
    CustomFieldCatalogue(session, as_admin).define({"key": "employees", "label": "Employees", "type": "number"})
    book = CustomerBook(session, as_admin)
    book.create({"kind": "company", "name": "Acme 阿克米", "company": {"name": "Acme", "industry": "IT",
                 "size": "10-49", "website": "https://acme.example"},
                 "contact": {"phones": ["13800138000", "+44 20 7946 0958"], "emails": ["a@acme.cn"],
                             "address": {"country": "CN", "city": "上海", "street": "1 Road", "postcode": "200000"}},
                 "industry": "Software", "region": "east", "source": "fair", "tier": "B",
                 "lifecycle_stage": "prospect", "tags": ["vip", "华东"], "notes": "=not a formula",
                 "custom_fields": {"employees": 42}, "external_id": "ACME-1"})
    book.create({"kind": "person", "name": "Zoe", "contact": {"emails": ["zoe@x.cn"]}})
    session.commit()
    _, header, _ = export(session, as_admin, file_format=file_format)
    content = base64.b64decode(CustomerExport(session, as_admin).render({}, {"format": file_format})["content"])

    job = imports.Imports(session, as_admin).start(content, "back." + file_format,
                                                   {"dry_run": False, "on_duplicate": "update"})
    # Every column re-imports (no mapping needed) and every value is as it was: nothing to update.
    assert set(job["mapping"]) == set(header) - {"id", "created_at", "updated_at"}
    assert job["report"] == {"rows_read": 2, "created": 0, "updated": 0, "skipped": 2, "rejected": [],
                             "rejected_count": 0, "dry_run": False}


# --- through the service's entrypoints ---------------------------------------------------

def test_service_entrypoints_import_get_and_export(session, as_alice):
    service = worker_factory(CustomersService, db=session, context=as_alice)
    content = base64.b64encode(csv_bytes([ANN])).decode()
    job = service.import_customers(content, "c.csv", {"mapping": MAPPING, "dry_run": False})
    assert job["report"]["created"] == 1
    assert service.get_import(job["id"])["status"] == "done"
    exported = service.export_customers({}, {"format": "csv"})
    assert exported["rows"] == 1 and exported["content_type"].startswith("text/csv")
    with pytest.raises(ValidationFailed) as raised:
        service.import_customers("not base64!", "c.csv", {"mapping": MAPPING})
    assert list(raised.value.errors) == ["file"]
