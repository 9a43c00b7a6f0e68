"""Cursor (keyset) pagination, the same for every list in every service.

A cursor is opaque to clients: base64 of the sort value and id of the last
row seen. Keyset pages stay fast and stable while rows are inserted, where
OFFSET pages slow down and skip or repeat rows.
"""
import base64
import binascii
import json
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import and_, or_

from crm_common.errors import ValidationFailed

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Pages a service hands another service to copy everything it has (reporting's rebuild): no user
# waits on them and fewer round trips matter more than small responses.
FEED_DEFAULT_LIMIT = 500
FEED_MAX_LIMIT = 1000


def check_limit(limit, default=DEFAULT_LIMIT, maximum=MAX_LIMIT):
    if limit is None:
        return default
    try:
        limit = int(limit)
    except (TypeError, ValueError):
        limit = 0
    if not 1 <= limit <= maximum:
        raise ValidationFailed("limit is out of range",
                               {"limit": [f"Must be between 1 and {maximum}."]})
    return limit


def parse_sort(sort, sortable, default="-created_at"):
    """(field name, descending) of a ``sort`` parameter ("name", "-created_at"), or ValidationFailed
    naming ``sort`` when the field is not one of ``sortable``."""
    sort = sort or default
    descending = sort.startswith("-")
    name = sort[1:] if sort[:1] in "-+" else sort
    if name not in sortable:
        raise ValidationFailed("sort is not valid", {"sort": [
            f"Sort by one of: {', '.join(sortable)} (prefix - for descending)."]})
    return name, descending


def encode_cursor(sort_value, row_id):
    # Typed values keep their type through the cursor: the next page compares
    # them with the column as what they are (a date, an exact amount), not as text.
    if isinstance(sort_value, datetime):
        sort_value = {"dt": sort_value.isoformat()}
    elif isinstance(sort_value, date):
        sort_value = {"d": sort_value.isoformat()}
    elif isinstance(sort_value, Decimal):
        sort_value = {"dec": str(sort_value)}
    raw = json.dumps([sort_value, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor):
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        sort_value, row_id = json.loads(raw)
        if isinstance(sort_value, dict):
            sort_value = _typed_value(sort_value)
        # A tampered cursor must not reach the database as a list or object.
        if isinstance(sort_value, (list, dict)) or isinstance(row_id, (list, dict)):
            raise TypeError("not a scalar")
        return sort_value, row_id
    except (binascii.Error, ValueError, TypeError, KeyError, InvalidOperation):
        raise ValidationFailed("cursor is not valid", {"cursor": ["Not a valid cursor."]})


def _typed_value(tagged):
    if "dt" in tagged:
        return datetime.fromisoformat(tagged["dt"])
    if "d" in tagged:
        return date.fromisoformat(tagged["d"])
    value = Decimal(tagged["dec"])
    if not value.is_finite():
        raise ValueError("not a finite amount")
    return value


def keyset_page(session, statement, sort_column, id_column, descending, limit, cursor=None, sort_value=None,
                max_limit=MAX_LIMIT):
    """Run ``statement`` one page at a time: returns (rows, next_cursor or None).

    ``sort_column`` may be an expression (e.g. a COALESCE that puts empty
    values last); then ``sort_value(row)`` computes its value for the cursor.
    """
    limit = check_limit(limit, maximum=max_limit)
    if cursor:
        value, last_id = decode_cursor(cursor)
        if descending:
            after = or_(sort_column < value, and_(sort_column == value, id_column < last_id))
        else:
            after = or_(sort_column > value, and_(sort_column == value, id_column > last_id))
        statement = statement.where(after)
    if descending:
        statement = statement.order_by(sort_column.desc(), id_column.desc())
    else:
        statement = statement.order_by(sort_column.asc(), id_column.asc())
    # unique(): a page may join a collection in (joinedload), one result row per element.
    rows = session.execute(statement.limit(limit + 1)).scalars().unique().all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        value = sort_value(last) if sort_value else getattr(last, sort_column.key)
        next_cursor = encode_cursor(value, getattr(last, id_column.key))
    return rows, next_cursor


def feed_page(session, statement, id_column, limit=None, cursor=None):
    """A page of a feed another service copies everything from: ordered by ``id_column`` alone
    (stable while rows change, so a walk sees every row once), FEED_DEFAULT_LIMIT rows unless
    ``limit`` says otherwise (at most FEED_MAX_LIMIT)."""
    limit = check_limit(limit, default=FEED_DEFAULT_LIMIT, maximum=FEED_MAX_LIMIT)
    return keyset_page(session, statement, id_column, id_column, False, limit, cursor, max_limit=FEED_MAX_LIMIT)
