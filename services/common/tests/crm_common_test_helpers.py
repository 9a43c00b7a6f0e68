"""Helpers of the crm_common tests (a uniquely named module: several test
folders each have a conftest.py, so tests import helpers from here)."""
import time

import eventlet
from sqlalchemy import Column, Integer, MetaData, String, Table


def wait_for(condition, timeout=5.0, interval=0.02, message="condition"):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        eventlet.sleep(interval)


# A tiny table some test services write to.
notes_metadata = MetaData()
notes_table = Table(
    "notes",
    notes_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("text", String(100), nullable=False),
)
