"""Endpoints every service has: /health and /metrics over HTTP, ``ping`` over RPC.

Mixed into each service class; nameko finds entrypoints on base classes too.
The HTTP port comes from the service's WEB_SERVER_ADDRESS config.
"""
import json

from crm_common.entrypoints import rpc
from crm_common.web import http
from werkzeug.wrappers import Response

from crm_common.metrics import exposition
from crm_common.shutdown import shutdown_deadline


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
