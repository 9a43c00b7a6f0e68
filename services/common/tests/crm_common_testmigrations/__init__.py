"""A tiny alembic migrations package for the crm_common migration tests,
laid out like a service's ``<service>/migrations``; ``metadata`` plays the
service's models."""
from sqlalchemy import Column, Integer, MetaData, String, Table

from crm_common.types import UtcDateTime

metadata = MetaData()

widgets = Table(
    "widgets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(50), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("colour", String(20), nullable=True),
)
