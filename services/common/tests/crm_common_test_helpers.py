"""Helpers of the crm_common tests (a uniquely named module: several test
folders each have a conftest.py, so tests import helpers from here)."""
from sqlalchemy import Column, Integer, MetaData, String, Table

from crm_common.testing import wait_until as wait_for  # noqa: F401 (the tests import it from here)




# A tiny table some test services write to.
notes_metadata = MetaData()
notes_table = Table(
    "notes",
    notes_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("text", String(100), nullable=False),
)
