"""The customers service's business counters move when the fact commits, and only then."""
import csv
import io

from prometheus_client import REGISTRY

from customers import imports
from customers.activity import Followups
from customers.domain import CustomerBook

MAPPING = {"ID": "external_id", "Name": "name", "Phone": "phones"}


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0


def import_csv(session, context, rows, dry_run=False):
    buffer = io.StringIO()
    csv.writer(buffer).writerows([list(MAPPING)] + rows)
    imports.Imports(session, context).start(buffer.getvalue().encode(), "c.csv",
                                            {"mapping": MAPPING, "dry_run": dry_run, "on_duplicate": "skip"})
    session.commit()


def test_customers_created_counts_by_kind_after_commit_and_not_on_rollback(session, as_alice):
    before = sample("crm_customers_created_total", kind="company")
    book = CustomerBook(session, as_alice)
    book.create({"kind": "company", "name": "Counted Works"})
    assert sample("crm_customers_created_total", kind="company") == before  # not committed yet
    session.commit()
    assert sample("crm_customers_created_total", kind="company") == before + 1
    book.create({"kind": "company", "name": "Rolled Back Works"})
    session.rollback()
    assert sample("crm_customers_created_total", kind="company") == before + 1


def test_customers_imported_counts_created_rows_but_not_a_dry_run(session, as_alice):
    before = sample("crm_customers_imported_total")
    import_csv(session, as_alice, [["M1", "Mia Dry", "13800138001"]], dry_run=True)
    assert sample("crm_customers_imported_total") == before
    import_csv(session, as_alice, [["M1", "Mia Real", "13800138001"], ["M2", "Max Real", "13800138002"]])
    assert sample("crm_customers_imported_total") == before + 2


def test_followups_logged_counts_by_type(session, as_alice):
    company = CustomerBook(session, as_alice).create({"kind": "company", "name": "Followed Up Co"})
    before = sample("crm_followups_logged_total", type="visit")
    Followups(session, as_alice).log(company["id"], {"type": "visit", "summary": "Met on site"})
    session.commit()
    assert sample("crm_followups_logged_total", type="visit") == before + 1
