"""Helpers for service tests: an in-memory database with the real schema."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

# The kernel tables are defined beside the code that uses them; importing
# those modules puts the tables into kernel_metadata.
import crm_common.consumer  # noqa: F401
import crm_common.outbox  # noqa: F401
from crm_common.db import kernel_metadata, make_engine, make_session_factory
from crm_common.migrate import upgrade


def memory_session(service_metadata):
    """A session on a fresh in-memory SQLite database holding the service's tables."""
    engine = make_engine("sqlite://")
    service_metadata.create_all(engine)
    kernel_metadata.create_all(engine)
    return make_session_factory(engine)()


def schema_drift(migrations_package, service_metadata, url):
    """Differences between the migrated schema at ``url`` and the models (empty when in step)."""
    upgrade(migrations_package, url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, [service_metadata, kernel_metadata])
    finally:
        engine.dispose()
