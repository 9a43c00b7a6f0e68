"""Writing many rows into one table at once, in the caller's transaction.

``insert_rows`` is ``session.execute(insert(table), rows)`` made cheaper for
large batches: on PostgreSQL it streams the rows with ``COPY ... FROM STDIN``
(no SQL to build, parse and plan per batch of VALUES, and no per-parameter
work in SQLAlchemy), elsewhere it is that executemany. Values go through
each column type's own bind processing first (JSON is serialised as
SQLAlchemy would, UTC timestamps are checked), so the stored rows are the
same either way; services/common/tests/test_common_bulk.py compares them.

COPY needs psycopg2 outside green mode: under eventlet's monkey patch (a
nameko service) the rows go the executemany way too; customers' import
runner, a process of its own, gets the COPY.

Every row gives the same keys. A column left out gets its server default
(a serial id); a column with a Python-side default must be given (COPY
cannot run it), or the rows go the executemany way.
"""
import re
from datetime import date, datetime
from io import StringIO

from sqlalchemy import insert

# Fewer rows than this are not worth a COPY.
COPY_MIN_ROWS = 50


def insert_rows(session, table, rows):
    """Insert ``rows`` (dicts with the same keys) into ``table`` in the session's transaction."""
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    columns = list(rows[0])
    if (dialect.name != "postgresql" or dialect.driver != "psycopg2" or len(rows) < COPY_MIN_ROWS
            or _green_psycopg2()
            or any(column.default is not None for column in table.columns if column.key not in rows[0])):
        session.execute(insert(table), rows)
        return
    table_columns = [table.columns[key] for key in columns]
    converters = [(key, _converter(column.type.dialect_impl(dialect).bind_processor(dialect)))
                  for key, column in zip(columns, table_columns)]
    buffer = StringIO("".join(["\t".join([convert(row[key]) for key, convert in converters]) + "\n"
                               for row in rows]))
    names = ", ".join(dialect.identifier_preparer.quote(column.name) for column in table_columns)
    target = dialect.identifier_preparer.format_table(table)
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {target} ({names}) FROM STDIN", buffer)
    finally:
        cursor.close()


def _green_psycopg2():
    """Under eventlet psycopg2 runs in green mode, where it cannot COPY."""
    from psycopg2.extensions import get_wait_callback

    return get_wait_callback() is not None


_NEEDS_ESCAPE = re.compile(r"[\\\n\r\t]")


def _converter(process):
    """value -> COPY text, through the column type's bind processing when it has one."""
    if process is None:
        return _copy_text
    return lambda value: _copy_text(process(value))


def _copy_text(value):
    """A value in COPY's text format."""
    if value is None:
        return "\\N"
    cls = value.__class__
    if cls is str:
        if _NEEDS_ESCAPE.search(value):
            # Chained replaces run in C; str.translate with a dict is ten times slower here.
            value = (value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
                     .replace("\t", "\\t"))
        return value
    if cls is bool:
        return "t" if value else "f"
    if cls is datetime or cls is date:
        return value.isoformat()
    if cls is int or cls is float:
        return repr(value)
    if isinstance(value, str):
        return _copy_text(str(value))
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, int):
        return repr(int(value))
    if isinstance(value, float):
        return repr(float(value))
    return _copy_text(str(value))
