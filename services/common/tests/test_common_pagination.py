"""crm_common.pagination: keyset pages neither skip nor repeat rows."""
import base64
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crm_common.errors import ValidationFailed
from crm_common.pagination import (
    DEFAULT_LIMIT, FEED_DEFAULT_LIMIT, FEED_MAX_LIMIT, MAX_LIMIT, check_limit, decode_cursor, encode_cursor,
    feed_page, keyset_page, parse_sort,
)
from crm_common.testing import memory_session
from crm_common.types import UtcDateTime


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


T0 = datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def session():
    session = memory_session(Base.metadata)
    # 23 rows, only three distinct sort values each; ids not in insertion order.
    for n in range(23):
        session.add(Item(id=f"id-{(n * 7) % 23:02d}", rank=n % 3,
                         created_at=T0 + timedelta(hours=n % 3)))
    session.commit()
    return session


def walk(session, column, descending, limit):
    seen, cursor, pages = [], None, 0
    while True:
        rows, cursor = keyset_page(session, select(Item), column, Item.id, descending, limit, cursor)
        assert len(rows) <= limit
        seen.extend(rows)
        pages += 1
        if cursor is None:
            return seen, pages
        assert pages < 100, "pagination does not end"


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 4, 7, 23, 50])
def test_walk_over_equal_sort_values_sees_each_row_once_in_order(session, descending, limit):
    seen, pages = walk(session, Item.rank, descending, limit)
    expected = sorted(session.execute(select(Item)).scalars().all(),
                      key=lambda item: (item.rank, item.id), reverse=descending)
    assert [item.id for item in seen] == [item.id for item in expected]
    assert len(seen) == 23
    assert pages == -(-23 // limit)  # no empty trailing page


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
def test_walk_over_equal_timestamps(session, descending):
    seen, _ = walk(session, Item.created_at, descending, 5)
    expected = sorted(session.execute(select(Item)).scalars().all(),
                      key=lambda item: (item.created_at, item.id), reverse=descending)
    assert [item.id for item in seen] == [item.id for item in expected]


def test_rows_inserted_behind_the_cursor_are_not_repeated(session):
    first, cursor = keyset_page(session, select(Item), Item.rank, Item.id, False, 10)
    session.add(Item(id="id-00-new-but-early", rank=0, created_at=T0))  # sorts before the cursor
    session.commit()
    rest, _ = keyset_page(session, select(Item), Item.rank, Item.id, False, 50, cursor)
    ids = [item.id for item in first + rest]
    assert len(ids) == len(set(ids)) == 23


def test_filters_in_the_statement_are_kept(session):
    statement = select(Item).where(Item.rank == 1)
    rows, cursor = keyset_page(session, statement, Item.created_at, Item.id, False, 3)
    more, last = keyset_page(session, statement, Item.created_at, Item.id, False, 3, cursor)
    everything = rows + more
    while last:
        page, last = keyset_page(session, statement, Item.created_at, Item.id, False, 3, last)
        everything += page
    assert {item.rank for item in everything} == {1}
    assert len(everything) == 8


def test_cursor_round_trip():
    assert decode_cursor(encode_cursor(5, "id-1")) == (5, "id-1")
    assert decode_cursor(encode_cursor("Acme", "id-2")) == ("Acme", "id-2")
    assert decode_cursor(encode_cursor(T0, "id-3")) == (T0, "id-3")
    assert decode_cursor(encode_cursor(T0.date(), "id-4")) == (T0.date(), "id-4")
    amount, _ = decode_cursor(encode_cursor(Decimal("1200.50"), "id-5"))
    assert amount == Decimal("1200.50") and isinstance(amount, Decimal)
    assert "=" not in encode_cursor("x", "id")  # URL-safe, unpadded


def b64(raw):
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "not a cursor!",
    "@@@@",
    b64("not json"),
    b64("[1]"),
    b64("[1, 2, 3]"),
    b64("5"),
    b64('[{"dt": "yesterday"}, "id"]'),
    b64('[{"other": 1}, "id"]'),
    b64('[{"d": "soon"}, "id"]'),
    b64('[{"dec": "lots"}, "id"]'),
    b64('[{"dec": "NaN"}, "id"]'),
    b64('[[1, 2], "id"]'),
    b64('["x", {"id": 1}]'),
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
])
def test_bad_cursor_fails_validation_naming_the_field(session, cursor):
    with pytest.raises(ValidationFailed) as raised:
        keyset_page(session, select(Item), Item.rank, Item.id, False, 5, cursor)
    assert list(raised.value.errors) == ["cursor"]
    assert raised.value.status == 422


def test_check_limit_defaults_and_bounds():
    assert check_limit(None) == DEFAULT_LIMIT == 50
    assert check_limit("20") == 20
    assert check_limit(1) == 1
    assert check_limit(MAX_LIMIT) == MAX_LIMIT == 200


@pytest.mark.parametrize("limit", [0, -1, 201, "abc", "", 2.5e9, [5]])
def test_bad_limit_fails_validation_naming_the_field(limit):
    with pytest.raises(ValidationFailed) as raised:
        check_limit(limit)
    assert list(raised.value.errors) == ["limit"]


@pytest.mark.parametrize("limit", [0, -3, 500, "many"])
def test_keyset_page_refuses_a_bad_limit(session, limit):
    with pytest.raises(ValidationFailed) as raised:
        keyset_page(session, select(Item), Item.rank, Item.id, False, limit)
    assert list(raised.value.errors) == ["limit"]


@pytest.mark.parametrize("sort, expected", [
    (None, ("created_at", True)), ("name", ("name", False)), ("-name", ("name", True)), ("+name", ("name", False)),
])
def test_a_sort_parameter_names_a_field_and_a_direction(sort, expected):
    assert parse_sort(sort, ("name", "created_at")) == expected


@pytest.mark.parametrize("sort", ["salary", "--name", "-+name", "name-"])
def test_an_unknown_sort_names_the_parameter_and_the_choices(sort):
    with pytest.raises(ValidationFailed) as caught:
        parse_sort(sort, ("name", "created_at"))
    assert caught.value.errors == {"sort": ["Sort by one of: name, created_at (prefix - for descending)."]}


def test_feed_pages_go_by_id_500_by_default_and_up_to_1000(session):
    rows, cursor = feed_page(session, select(Item), Item.id)
    assert [row.id for row in rows] == sorted(f"id-{n:02d}" for n in range(23)) and cursor is None
    first, cursor = feed_page(session, select(Item), Item.id, 20)
    rest, last = feed_page(session, select(Item), Item.id, FEED_MAX_LIMIT, cursor)
    assert len(first) == 20 and len(rest) == 3 and last is None
    assert {row.id for row in first} | {row.id for row in rest} == {row.id for row in rows}
    with pytest.raises(ValidationFailed) as raised:
        feed_page(session, select(Item), Item.id, FEED_MAX_LIMIT + 1)
    assert list(raised.value.errors) == ["limit"]
    assert check_limit(None, default=FEED_DEFAULT_LIMIT, maximum=FEED_MAX_LIMIT) == 500
