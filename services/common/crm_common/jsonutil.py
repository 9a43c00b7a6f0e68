"""JSON that knows our value types: Decimal as a string, datetimes as ISO 8601 UTC."""
import json
import uuid
from datetime import date, datetime
from decimal import Decimal


def to_jsonable(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value, **kwargs):
    return json.dumps(value, default=to_jsonable, ensure_ascii=False, **kwargs)


def loads(text):
    return json.loads(text)
