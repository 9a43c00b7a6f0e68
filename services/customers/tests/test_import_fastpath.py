"""The import's fast path builds exactly what the full path (CustomerCreate + CustomerBook.prepare +
to_dict) builds, and leaves every row it is not sure of to the full path."""
from datetime import datetime, timezone

import pytest

from crm_common.errors import ValidationFailed

from customers import domain, import_fastpath, imports
from customers.custom_fields import CustomFieldCatalogue
from customers.domain import CustomerBook, to_dict
from customers.schemas import default_phone_region

from conftest import ALICE, BOB

NOW = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=timezone.utc)
CUSTOMER_ID = "11111111-2222-4333-8444-555555555555"

PLAIN_ROWS = [
    {"kind": "person", "name": "Ann Lee", "contact": {"phones": ["13800138000"]}},
    {"kind": "person", "name": "  Ann  Lee ", "external_id": " E1 ", "tier": " A ",
     "contact": {"phones": ["+86 138 0013 8000", "13800138000", "13900139000"],
                 "emails": ["Ann@Acme.CN", "ann@acme.cn ", "b@x.org"],
                 "address": {"city": " Shanghai ", "country": "CN", "region": "east", "street": "1 Road",
                             "postcode": "200000"}},
     "company": {"name": "Acme Ltd", "industry": "retail", "size": "10-49", "website": "https://acme.cn"},
     "tags": ["vip", "VIP", " 华东 ", "b", "a"], "region": "east", "industry": "retail", "source": "展会",
     "notes": "met at the fair", "lifecycle_stage": "prospect"},
    {"kind": "company", "name": "Müller GmbH", "company": {"name": "Müller"}},
    {"kind": "person", "name": "王伟", "contact": {"emails": ["wang@example.com"]}, "company": {"name": "腾讯科技 3"}},
    {"kind": "person", "name": "Bob", "contact": {"emails": ["bob@example.com"]}, "owner_id": ALICE.upper()},
    {"kind": "person", "name": "Custom", "contact": {"emails": ["c@example.com"]},
     "custom_fields": {"employees": 12, "partner": True}},
    {"kind": "person", "name": "x" * 200, "external_id": "e" * 100, "contact": {"emails": ["d@example.com"]},
     "tags": ["t" * 50]},
]

# Rows the fast path must leave to the full path (which accepts or rejects them with its messages).
NOT_PLAIN_ROWS = [
    {"kind": "person", "name": "No contact"},
    {"kind": "person", "name": "Bad phone", "contact": {"phones": ["12345"]}},
    {"kind": "person", "name": "Bad email", "contact": {"emails": ["not-an-email"]}},
    {"kind": "robot", "name": "Bad kind", "contact": {"emails": ["a@example.com"]}},
    {"kind": "person", "name": "   ", "contact": {"emails": ["a@example.com"]}},
    {"kind": "person", "name": "x" * 201, "contact": {"emails": ["a@example.com"]}},
    {"kind": "person", "name": "Blank region", "region": "  ", "contact": {"emails": ["a@example.com"]}},
    {"kind": "person", "name": "Bad tier", "tier": "E", "contact": {"emails": ["a@example.com"]}},
    {"kind": "person", "name": "Bad site", "company": {"website": "acme"}, "contact": {"emails": ["a@example.com"]}},
    {"kind": "person", "name": "Bad size", "company": {"size": "huge"}, "contact": {"emails": ["a@example.com"]}},
    {"kind": "person", "name": "Long tag", "tags": ["t" * 51], "contact": {"emails": ["a@example.com"]}},
    {"kind": "person", "name": "Many phones", "contact": {"phones": [f"1380013{n:04d}" for n in range(11)]}},
    {"kind": "person", "name": "Bad owner", "owner_id": "nobody", "contact": {"emails": ["a@example.com"]}},
    {"kind": "person", "name": "Unknown custom", "custom_fields": {"nope": "x"}, "contact": {"emails": ["a@example.com"]}},
    {"kind": "person", "name": "Bad custom", "custom_fields": {"employees": "many"}, "contact": {"emails": ["a@e.com"]}},
    {"kind": "person", "name": "Unknown key", "colour": "red", "contact": {"emails": ["a@example.com"]}},
    {"kind": "person", "name": "Unknown address key", "contact": {"emails": ["a@example.com"], "address": {"x": "y"}}},
]


@pytest.fixture
def frozen(monkeypatch):
    monkeypatch.setattr(domain, "utcnow", lambda: NOW)
    monkeypatch.setattr(import_fastpath, "utcnow", lambda: NOW)


@pytest.fixture
def catalogue(session, as_admin):
    catalogue = CustomFieldCatalogue(session, as_admin)
    catalogue.define({"key": "employees", "label": "Employees", "type": "number"})
    catalogue.define({"key": "partner", "label": "Partner", "type": "boolean"})
    return catalogue


def full_path(session, context, data, team_id):
    customer = CustomerBook(session, context).prepare(data, team_id)
    customer.id, customer.version = CUSTOMER_ID, 1
    values = {column: getattr(customer, attribute) for column, attribute in imports.CUSTOMER_COLUMNS}
    return values, customer.tags, sorted((i.kind, i.value) for i in customer.identifiers), to_dict(customer)


@pytest.mark.parametrize("data", PLAIN_ROWS)
@pytest.mark.parametrize("team_id", [None, "west"])
def test_plain_rows_become_what_the_full_path_makes(session, as_admin, catalogue, frozen, data, team_id):
    fast = import_fastpath.prepare_fast(as_admin, catalogue, data, team_id, CUSTOMER_ID, default_phone_region())
    assert fast is not None
    values, tags, identifiers, snapshot = fast
    expected = full_path(session, as_admin, data, team_id)
    assert values == expected[0]
    assert list(values) == [column for column, _ in imports.CUSTOMER_COLUMNS] or set(values) == set(expected[0])
    assert tags == expected[1]
    assert sorted(identifiers) == expected[2] and len(identifiers) == len(expected[2])
    assert snapshot == expected[3]
    assert list(snapshot) == list(expected[3])


@pytest.mark.parametrize("data", NOT_PLAIN_ROWS, ids=[row["name"][:20] for row in NOT_PLAIN_ROWS])
def test_rows_it_is_not_sure_of_go_the_full_path(session, as_admin, catalogue, data):
    assert import_fastpath.prepare_fast(as_admin, catalogue, data, None, CUSTOMER_ID, default_phone_region()) is None


def test_a_sales_user_naming_another_owner_and_a_viewer_go_the_full_path(session, as_alice, as_viewer, catalogue):
    data = {"kind": "person", "name": "Ann", "contact": {"emails": ["a@example.com"]}}
    catalogue_alice = CustomFieldCatalogue(session, as_alice)
    assert import_fastpath.prepare_fast(as_alice, catalogue_alice, {**data, "owner_id": BOB}, None, CUSTOMER_ID,
                                        "CN") is None
    assert import_fastpath.prepare_fast(as_alice, catalogue_alice, {**data, "owner_id": ALICE}, None, CUSTOMER_ID,
                                        "CN") is not None
    assert import_fastpath.prepare_fast(as_viewer, CustomFieldCatalogue(session, as_viewer), data, None,
                                        CUSTOMER_ID, "CN") is None
    with pytest.raises(ValidationFailed):
        CustomerBook(session, as_alice).prepare({**data, "owner_id": BOB})


def test_prepare_rows_mixes_both_paths_in_file_order(session, as_admin, catalogue):
    fields = ["name", "phones", "emails", "tier"]
    rows = [(2, ["Ann", "13800138000", "", "A"]), (3, ["Bad", "12345", "", ""]),
            (4, ["Bo", "", "bo@example.com", "B "]), (5, ["Cy", "", "cy@example.com", "Z"])]
    prepared, rejected = imports.prepare_rows(CustomerBook(session, as_admin), fields, None, rows)
    assert [row.number for row in prepared] == [2, 4]
    assert [row.snapshot["tier"] for row in prepared] == ["A", "B"]
    assert [number for number, _ in rejected] == [3, 5]
    assert rejected[0][1].errors == {"contact": {"phones": {0: [
        "'12345' is not a valid phone number; write it with its country code, e.g. +86 138 0013 8000."]}}} \
        or "phones" in str(rejected[0][1].errors)
    assert "tier" in rejected[1][1].errors
