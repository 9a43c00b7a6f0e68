"""Keyword search through its indexes (customers.search): the same customers as LIKE alone
found, on SQLite (FTS5 trigrams) and PostgreSQL (pg_trgm and character pairs), and the
PostgreSQL query uses its indexes."""
import pytest
from sqlalchemy import select, text

from crm_common.context import RequestContext
from crm_common.db import make_engine, make_session_factory
from crm_common.migrate import upgrade
from crm_common.testing import memory_session, postgres_database

from customers import search
from customers.activity import Contacts
from customers.domain import CustomerBook
from customers.models import Base, Customer, SQLITE_SEARCH_DDL
from conftest import ALICE, BOB, MANAGER, ADMIN

ADMIN_CONTEXT = RequestContext(request_id="r-admin", user_id=ADMIN, role="admin", team_id=None)
CALLERS = {
    "admin": ADMIN_CONTEXT,
    "alice (sales, east)": RequestContext(request_id="r-alice", user_id=ALICE, role="sales", team_id="east"),
    "bob (sales, west)": RequestContext(request_id="r-bob", user_id=BOB, role="sales", team_id="west"),
    "east manager": RequestContext(request_id="r-m", user_id=MANAGER, role="manager", team_id="east"),
}

# (owner, body): Chinese and accented names, companies, punctuation and LIKE's wildcards.
CUSTOMERS = [
    (ALICE, {"kind": "person", "name": "Zoë Müller", "company": {"name": "Café Zürich"},
             "contact": {"emails": ["zoe@cafe.example"]}}),
    (ALICE, {"kind": "company", "name": "北京星辰科技有限公司"}),
    (BOB, {"kind": "company", "name": "上海星辰贸易有限公司"}),
    (BOB, {"kind": "person", "name": "王小明", "company": {"name": "北京天宇建材有限公司"},
           "contact": {"emails": ["wang@tianyu.example"]}}),
    (ALICE, {"kind": "person", "name": "王芳", "contact": {"emails": ["fang@example.cn"]}}),
    (BOB, {"kind": "company", "name": "100% Real"}),
    (ALICE, {"kind": "company", "name": "Acme Co."}),
    (BOB, {"kind": "company", "name": "Müller & Söhne GmbH"}),
    (ALICE, {"kind": "company", "name": "A_B Trading"}),
    (ALICE, {"kind": "person", "name": "Chloé Núñez", "company": {"name": "Wayne Software 632 LLC"},
             "contact": {"emails": ["chloe@wayne.example"]}}),
    (BOB, {"kind": "company", "name": "wonka trading 821 co."}),
    (ALICE, {"kind": "company", "name": "Quoted \"Name\" Ltd"}),
]
DELETED = {"kind": "company", "name": "星辰旧公司"}

QUERIES = [
    "王", "星", "辰", "星辰", "北京星辰", "星辰科技有限", "天宇 王", "有限公司 北京",   # Chinese, 1-2-3+ characters
    "MÜLLER", "muller", "mu", "ü", "söhne", "zoe cafe", "nunez chloe", "zuri",          # accents, words
    "co.", "co", "a_b", "_", "%", "100%", '"name"', "o.", "trading 821", "82",          # punctuation, wildcards
    "hank", "scorpio acme", "ll", "l",                                                   # contact names
    "zqxj", "星辰 zqxj", "zz", "张",                                                     # no match
]


def populate(session):
    for owner, body in CUSTOMERS:
        context = RequestContext(request_id="r-seed", user_id=owner, role="sales",
                                 team_id="east" if owner == ALICE else "west")
        CustomerBook(session, context).create(body)
    acme = session.execute(select(Customer).where(Customer.name == "Acme Co.")).scalar_one()
    Contacts(session, ADMIN_CONTEXT).create(acme.id, {"name": "Hank Scorpio"})
    book = CustomerBook(session, ADMIN_CONTEXT)
    deleted = book.create(DELETED)
    book.delete(deleted["id"], deleted["version"])
    session.commit()


def like_only(statement, q, dialect):
    """What search did before it had indexes: every word by LIKE alone."""
    return statement.where(*(Customer.search_text.like(search.like_pattern(term), escape="\\")
                             for term in search.fold(q).split()))


def every_page(book, filters, sort=None, limit=2):
    """The names on every page, in order, and the cursors that led there."""
    names, cursors, cursor = [], [], None
    while True:
        page = book.list(filters, limit=limit, cursor=cursor, sort=sort)
        names += [item["name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return names, cursors
        cursors.append(cursor)


def results(session):
    found = {}
    for caller, context in CALLERS.items():
        book = CustomerBook(session, context)
        for q in QUERIES:
            for sort in (None, "name"):
                found[caller, q, sort] = every_page(book, {"q": q}, sort)
        if context.is_admin:
            found[caller, "deleted too", None] = every_page(book, {"q": "星辰", "include_deleted": True})
    return found


def check_same_as_like(session, monkeypatch):
    indexed = results(session)
    monkeypatch.setattr(search, "matching", like_only)
    assert results(session) == indexed
    # Not vacuous: the search finds what it should.
    assert sorted(indexed["admin", "星辰", None][0]) == ["上海星辰贸易有限公司", "北京星辰科技有限公司"]
    assert indexed["admin", "王", "name"][0] == ["王小明", "王芳"]
    assert indexed["bob (sales, west)", "星辰", None][0] == ["上海星辰贸易有限公司"]
    assert indexed["admin", "MÜLLER", "name"][0] == ["Müller & Söhne GmbH", "Zoë Müller"]
    assert indexed["admin", "scorpio acme", None][0] == ["Acme Co."]
    assert indexed["admin", "a_b", None][0] == ["A_B Trading"]
    assert indexed["admin", '"name"', None][0] == ['Quoted "Name" Ltd']
    assert sorted(indexed["admin", "deleted too", None][0]) == ["上海星辰贸易有限公司", "北京星辰科技有限公司", "星辰旧公司"]
    assert indexed["admin", "星辰 zqxj", None][0] == []
    assert len(indexed["admin", "l", "name"][0]) >= 5 and indexed["admin", "l", "name"][1]  # more than one page


# --- SQLite ------------------------------------------------------------------------

def test_sqlite_search_finds_what_like_alone_found(session, monkeypatch):
    populate(session)
    check_same_as_like(session, monkeypatch)


def search_mirror(session):
    """{customer id: search_text} as the FTS5 table holds it."""
    return dict(session.execute(text(
        "SELECT rows.customer_id, customer_search.search_text FROM customer_search_rows AS rows "
        "JOIN customer_search ON customer_search.rowid = rows.id")).all())


def test_sqlite_search_index_follows_every_change(session, as_admin):
    populate(session)
    book = CustomerBook(session, as_admin)
    acme = book.list({"q": "acme"})["items"][0]
    book.update(acme["id"], {"name": "Initech"}, acme["version"])
    gone = session.execute(select(Customer).where(Customer.name == "A_B Trading")).scalar_one()
    session.delete(gone)
    session.commit()
    assert search_mirror(session) == dict(session.execute(select(Customer.id, Customer.search_text)).all())
    assert [c["name"] for c in book.list({"q": "initech"})["items"]] == ["Initech"]
    assert book.list({"q": "acme"})["items"] == []
    assert [c["name"] for c in book.list({"q": "trading"})["items"]] == ["wonka trading 821 co."]


def test_sqlite_words_of_three_characters_are_looked_up_in_the_fts_index(session, as_admin):
    statement, *_ = CustomerBook(session, as_admin).statement({"q": "星辰科技 mu"})
    compiled = statement.compile(session.get_bind())
    parameters = tuple(compiled.params[name] for name in compiled.positiontup)
    plan = " | ".join(row[-1] for row in session.connection().exec_driver_sql(
        f"EXPLAIN QUERY PLAN {compiled}", parameters))
    assert "VIRTUAL TABLE INDEX" in plan and "customer_search" in plan, plan


def test_sqlite_migrations_make_the_search_index_the_models_make(tmp_path):
    """A database migrated from before the index gets it, filled, with the same DDL as create_all."""
    url = f"sqlite:///{tmp_path / 'customers.db'}"
    upgrade("customers.migrations", url, "0006")
    engine = make_engine(url)
    session = make_session_factory(engine)()
    CustomerBook(session, ADMIN_CONTEXT).create({"kind": "company", "name": "北京星辰科技有限公司"})
    session.commit()
    session.close()
    upgrade("customers.migrations", url)
    session = make_session_factory(engine)()
    assert [c["name"] for c in CustomerBook(session, ADMIN_CONTEXT).list({"q": "星辰科技"})["items"]] \
        == ["北京星辰科技有限公司"]
    assert len(search_mirror(session)) == 1
    schema = "SELECT type, name, sql FROM sqlite_master WHERE name LIKE 'customer_search%' ORDER BY name"
    migrated = session.execute(text(schema)).all()
    session.close()
    engine.dispose()
    fresh = memory_session(Base.metadata)
    assert [tuple(row) for row in migrated] == [tuple(row) for row in fresh.execute(text(schema)).all()]
    assert len([row for row in migrated if row[0] == "trigger"]) == 3 == len(SQLITE_SEARCH_DDL) - 2
    fresh.close()


# --- PostgreSQL --------------------------------------------------------------------

@pytest.fixture
def pg_url():
    """A PostgreSQL customers database migrated to head, with customers written before 0007."""
    with postgres_database("crm_test_customers_search") as url:
        upgrade("customers.migrations", url, "0006")
        engine = make_engine(url)
        session = make_session_factory(engine)()
        populate(session)
        session.close()
        engine.dispose()
        upgrade("customers.migrations", url)
        yield url


@pytest.fixture
def pg_session(pg_url):
    engine = make_engine(pg_url)
    session = make_session_factory(engine)()
    yield session
    session.rollback()
    session.close()
    engine.dispose()


def test_postgres_search_finds_what_like_alone_found(pg_session, monkeypatch):
    check_same_as_like(pg_session, monkeypatch)


def plan(session, q):
    """EXPLAIN of the admin's search for ``q`` (the filter; paging adds its order and limit)."""
    statement, *_ = CustomerBook(session, ADMIN_CONTEXT).statement({"q": q})
    compiled = statement.compile(session.get_bind())
    cursor = session.connection().connection.cursor()
    cursor.execute("EXPLAIN " + str(compiled), compiled.params)
    return "\n".join(row[0] for row in cursor.fetchall())


def test_postgres_search_uses_the_index_for_every_word_length(pg_url, pg_session):
    # Enough rows that an index is worth it, vacuumed as autovacuum leaves a table (a GIN index's
    # pending list merged) and no sequential scan, so the plan does not depend on the planner's
    # guess about a table this small.
    pg_session.execute(text(
        "INSERT INTO customers (id, kind, name, company, contact, owner_id, owner_team_id, lifecycle_stage, "
        "lifecycle_changed_at, lifecycle_dates, custom_fields, search_text, dedupe_key, created_at, updated_at, "
        "version) SELECT md5(n::text)::uuid::text, 'company', 'filler ' || n, '{}', '', NULL, NULL, 'lead', now(), "
        "'{}', '{}', 'filler company ' || n || ' 有限公司', '', now(), now(), 1 FROM generate_series(1, 5000) AS n"))
    pg_session.commit()
    engine = make_engine(pg_url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE customers")
    engine.dispose()
    pg_session.execute(text("SET LOCAL enable_seqscan = off"))
    for q in ("星辰科技", "muller", "trading 821"):       # 3+ letters in a row: trigrams
        assert "ix_customers_search_trgm" in plan(pg_session, q), plan(pg_session, q)
    for q in ("王", "星辰", "zo"):                         # fewer characters: characters and pairs
        assert "ix_customers_search_grams" in plan(pg_session, q), plan(pg_session, q)
    for q in ("co.", "a_b", "星辰 muller"):               # either (pg_trgm takes "co " from "co.")
        assert "ix_customers_search_" in plan(pg_session, q), plan(pg_session, q)
