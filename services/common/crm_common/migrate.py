"""Schema migrations (alembic) for every service, driven the same way.

Each service keeps its revisions in ``<service>/migrations/versions`` with a
three-line ``env.py`` that calls ``run_env``. ``upgrade`` is what services
run at start and ``make up`` runs before starting them:

    python -m crm_common.migrate customers            # upgrade to head
    python -m crm_common.migrate customers current    # show the revision
"""
import importlib
import os
import sys
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config

from crm_common.config import db_url
# The kernel tables are defined beside the code that uses them; importing
# those modules puts the tables into kernel_metadata.
import crm_common.consumer  # noqa: F401
import crm_common.outbox  # noqa: F401
from crm_common.db import kernel_metadata, make_engine
from crm_common.types import UtcDateTime

# Serialises migrations of one database when several instances start together.
PG_MIGRATION_LOCK_ID = 0x43524D  # "CRM"


def alembic_config(migrations_package, url):
    package = importlib.import_module(migrations_package)
    config = Config()
    config.set_main_option("script_location", os.path.dirname(package.__file__))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@contextmanager
def _migration_lock(connection):
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_lock(:id)"), {"id": PG_MIGRATION_LOCK_ID})
        try:
            yield
        finally:
            # Nothing is left to commit here (upgrade commits inside the lock);
            # after a failure this ends the aborted transaction so the unlock
            # runs and the original error is the one raised.
            connection.rollback()
            connection.execute(sa.text("SELECT pg_advisory_unlock(:id)"), {"id": PG_MIGRATION_LOCK_ID})
    else:
        yield


def upgrade(migrations_package, url, revision="head"):
    config = alembic_config(migrations_package, url)
    # No statement time limit: a migration may rewrite or index a whole table.
    engine = make_engine(url, statement_timeout=0)
    try:
        with engine.connect() as connection:
            with _migration_lock(connection):
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                # Commit before unlocking: the next instance must see the result.
                connection.commit()
    finally:
        engine.dispose()


def run_env(service_metadata):
    """The body of every service's migrations/env.py."""
    target_metadata = [service_metadata, kernel_metadata]
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run_migrations(connection, target_metadata)
        return
    # Run by the alembic command line: open (and close) our own connection.
    engine = make_engine(context.config.get_main_option("sqlalchemy.url"), statement_timeout=0)
    try:
        with engine.connect() as connection:
            _run_migrations(connection, target_metadata)
    finally:
        engine.dispose()


def _run_migrations(connection, target_metadata):
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copy
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def create_kernel_tables_v1(op):
    """The shared tables (outbox, processed events) as first released.

    Frozen on purpose: a later change to these tables gets a v2 function that
    each service's next migration calls, so old migrations stay reproducible.
    """
    op.create_table(
        "crm_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("published_at", UtcDateTime, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_crm_outbox_pending", "crm_outbox", ["id"],
                    postgresql_where=sa.text("published_at IS NULL"),
                    sqlite_where=sa.text("published_at IS NULL"))
    op.create_table(
        "crm_processed_events",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("processed_at", UtcDateTime, nullable=False),
    )


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    service, action = argv[0], (argv[1] if len(argv) > 1 else "upgrade")
    url = db_url(service)
    package = f"{service}.migrations"
    if action == "upgrade":
        upgrade(package, url)
        print(f"{service}: database at head")
    elif action == "current":
        config = alembic_config(package, url)
        engine = make_engine(url, statement_timeout=0)
        try:
            with engine.connect() as connection:
                config.attributes["connection"] = connection
                command.current(config, verbose=False)
        finally:
            engine.dispose()
    else:
        print(f"unknown action {action!r}; expected upgrade or current")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
