"""Endpoints every service has: /health and /metrics over HTTP, ``ping`` over RPC,
and the data-key jobs (``rotate_data_keys``, ``data_key_usage``) that ``crmctl`` calls.

Mixed into each service class; nameko finds entrypoints on base classes too.
The HTTP port comes from the service's WEB_SERVER_ADDRESS config.
"""
import json

from nameko.extensions import DependencyProvider
from crm_common.entrypoints import rpc
from crm_common.web import http
from werkzeug.wrappers import Response

# The kernel tables are defined beside the code that uses them; importing
# those modules puts the tables into kernel_metadata.
import crm_common.consumer  # noqa: F401
import crm_common.outbox  # noqa: F401
from crm_common.context import RequestContext
from crm_common.data_keys import DataKeyJobs
from crm_common.db import Database, kernel_metadata
from crm_common.metrics import exposition
from crm_common.shutdown import shutdown_deadline


class DataKeys(DependencyProvider):
    """A DataKeyJobs per worker, over the service's own Database (whatever its attribute
    name) and its metadata (``Database(metadata=Base.metadata)``) plus the kernel tables."""

    database = None

    def _database(self):
        # Found at first use: every worker gets this dependency, so it must be cheap.
        if self.database is None:
            databases = [dependency for dependency in self.container.dependencies
                         if isinstance(dependency, Database)]
            if len(databases) > 1:
                raise RuntimeError(f"{self.container.service_name}: data-key jobs need one Database, "
                                   f"found {len(databases)}")
            self.database = databases[0] if databases else None
        return self.database

    def get_dependency(self, worker_ctx):
        database = self._database()
        if database is None:
            return None  # a service without a database (a test double) holds no encrypted data
        metadata = [m for m in (database.metadata, kernel_metadata) if m is not None]
        relay = database.relay
        return DataKeyJobs(database.Session, metadata, RequestContext.from_context_data(worker_ctx.data),
                           self.container.service_name, after_commit=relay.kick if relay else None)


class OpsEndpoints:
    # Method names are prefixed so they never collide with a service's own
    # attributes (a dependency called ``metrics`` would hide a method of that name).
    @http("GET", "/health")
    def ops_health(self, request):
        return Response(json.dumps({"service": self.name, "status": "ok"}),
                        mimetype="application/json")

    @http("GET", "/metrics")
    def ops_metrics(self, request):
        body, content_type = exposition()
        return Response(body, content_type=content_type)

    @shutdown_deadline
    def ops_shutdown_deadline(self):
        """Never called: bounds how long SIGTERM waits for running workers (crm_common.shutdown)."""

    @rpc
    def ping(self):
        """Answers when the service is up and consuming RPC requests (used by /ready)."""
        return {"service": self.name, "status": "ok"}

    ops_data_keys = DataKeys()

    @rpc
    def rotate_data_keys(self):
        """Re-encrypt this service's data under the current key (admins and the system only):
        {"service", "current_key_id", "reencrypted": {"table.column": n}, "remaining": {...}}."""
        return self._data_key_jobs().rotate()

    @rpc
    def data_key_usage(self):
        """How many stored values each key id seals (admins and the system only)."""
        return self._data_key_jobs().usage()

    def _data_key_jobs(self):
        if self.ops_data_keys is None:
            raise RuntimeError(f"{self.name} has no database, so no data keys")
        return self.ops_data_keys
