"""Column types every service uses the same way."""
import uuid
from datetime import datetime, timezone

from sqlalchemy import DateTime, Numeric, String
from sqlalchemy.types import TypeDecorator


def utcnow():
    return datetime.now(timezone.utc)


def new_id():
    return str(uuid.uuid4())


class UtcDateTime(TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite drops the offset of a stored datetime; this type puts UTC back so
    code never compares naive with aware datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


def Uuid():
    """Ids are UUID strings: readable in both SQLite and PostgreSQL, the same on the wire."""
    return String(36)


def JsonDocument():
    """A JSON value: jsonb on PostgreSQL (indexable, compact), JSON text elsewhere."""
    from sqlalchemy import JSON
    from sqlalchemy.dialects.postgresql import JSONB
    return JSON().with_variant(JSONB(), "postgresql")


def Money():
    """Money is NUMERIC(18,2) with a currency code beside it, never float."""
    return Numeric(18, 2)
