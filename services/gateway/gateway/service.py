"""The gateway's HTTP routes: each parses the request, calls domain code or a
service over RPC, and returns. Authentication, roles, JSON bodies, errors and
metrics are handled by the ``api`` entrypoint (gateway.http)."""
import json
from functools import lru_cache, partial

from nameko.dependency_providers import Config
from werkzeug.wrappers import Response

from crm_common.consumer import event_handler
from crm_common.context import Context
from crm_common.errors import NotFound
from crm_common.metrics import Metrics
from crm_common.ops import OpsEndpoints
from crm_common.validation import load

from gateway.models import Base
from gateway import audit_trail, idempotency, users
from gateway.activity_routes import ActivityRoutes
from gateway.apikey_routes import ApiKeyRoutes
from gateway.audit_routes import AuditRoutes
from gateway.contract_routes import ContractRoutes
from gateway.customer_routes import CustomerRoutes
from gateway.personal_data_routes import PersonalDataRoutes
from gateway.import_routes import ImportRoutes
from gateway.pipeline_routes import PipelineRoutes
from gateway.product_routes import ProductRoutes
from gateway.report_routes import ReportRoutes
from gateway.webhook_routes import WebhookRoutes
from gateway.task_routes import TaskRoutes
from gateway.user_routes import UserRoutes
from gateway.auth import SignIn
from gateway.throttle import client_address
from gateway.user_schemas import LogoutRequest
from gateway.dependencies import Auth, GatewayDatabase
from gateway.permissions import rule
from gateway.http import (
    API_PREFIX, MethodNotAllowed, Reply, allowed_methods, api, page_arguments, route_registry,
)
from gateway.openapi import DOCS_CSP, DOCS_PAGE, build_openapi
from gateway.readiness import SERVICES, check_readiness
from crm_common.rpc import BoundedRpcProxy, broker_is_up
from gateway.schemas import (
    LoginRequest, NotificationPage, PageQuery,
    ReadinessResponse, RefreshRequest, TokenPairResponse, UserCreateRequest, UserPage, UserResponse,
)

# /ready answers within this even when services hang.
READY_TIMEOUT = 2.0


@lru_cache(maxsize=None)
def openapi_json(service_cls):
    return json.dumps(build_openapi(route_registry(service_cls)), ensure_ascii=False)


class GatewayService(CustomerRoutes, ActivityRoutes, ImportRoutes, ProductRoutes, PipelineRoutes, ContractRoutes,
                     PersonalDataRoutes,
                     ReportRoutes,
                     UserRoutes,
                     ApiKeyRoutes,
                     AuditRoutes,
                     TaskRoutes,
                     WebhookRoutes,
                     OpsEndpoints):
    name = "gateway"

    db = GatewayDatabase(migrations="gateway.migrations", metadata=Base.metadata)
    context = Context()
    metrics = Metrics()
    config = Config()
    auth = Auth()
    customers = BoundedRpcProxy("customers")
    sales = BoundedRpcProxy("sales")
    notifications = BoundedRpcProxy("notifications")
    reporting = BoundedRpcProxy("reporting")

    def _sign_in(self):
        return SignIn(self.db, self.auth.passwords, self.auth.access_tokens, context=self.context)

    def _users(self):
        return users.UserDirectory(self.db, self.auth.passwords, self.context)

    def _caller_session(self, request):
        """The session id of the caller's access token (the entrypoint has verified it already)."""
        token = request.headers.get("Authorization", "").partition(" ")[2].strip()
        return self.auth.access_tokens.verify(token)

    @staticmethod
    def _client_address(request):
        return client_address(request.remote_addr, request.headers.get("X-Forwarded-For"))

    # --- auth ----------------------------------------------------------------

    @api("POST", "/auth/login", public=True, body=LoginRequest, response=TokenPairResponse, tags=("auth",),
         summary="Sign in: an access token and a refresh token",
         description="After 5 failed sign-ins within 15 minutes, an account (known or not) or a client "
                     "address is locked: 429 with Retry-After, for 1 minute, then twice as long after each "
                     "further lock, up to an hour. A successful sign-in clears the account's count.")
    def login(self, request, body):
        credentials = load(LoginRequest, body)
        pair = self._sign_in().login(credentials["email"], credentials["password"], self._client_address(request))
        return TokenPairResponse().dump(pair)

    @api("POST", "/auth/refresh", public=True, body=RefreshRequest, response=TokenPairResponse, tags=("auth",),
         summary="Trade a refresh token (once) for a new pair",
         description="Each refresh token works once. Presenting a used one again signs out every "
                     "session descended from the same login.")
    def refresh(self, request, body):
        refresh_token = load(RefreshRequest, body)["refresh_token"]
        return TokenPairResponse().dump(self._sign_in().refresh(refresh_token))

    @api("POST", "/auth/logout", allow=rule("own account", "sign out"), body=LogoutRequest, status=204, tags=("auth",),
         summary="Sign out: end the session of this access token",
         description="The access token stops working at once and the session's refresh tokens are revoked; "
                     "a refresh_token in the body ends its session too (when it is yours). Your other "
                     "sessions are not affected.")
    def logout(self, request, body):
        refresh_token = load(LogoutRequest, body if body is not None else {}).get("refresh_token")
        self._sign_in().logout(self._caller_session(request), refresh_token)
        return Reply(status=204)

    @api("GET", "/me", allow=rule("own account", "read"), response=UserResponse, tags=("auth",),
         summary="The signed-in user")
    def me(self, request):
        return users.to_dict(self._users().get(self.context.user_id))

    # --- users ---------------------------------------------------------------

    def _once(self, request, body, create):
        """Run a creating POST at most once per Idempotency-Key (when the client sends one)."""
        key = request.headers.get(idempotency.HEADER)
        if key is None:
            return create()

        def run():
            reply = create()
            return idempotency.StoredOutcome(reply.status or 201, reply.headers, reply.data)

        outcome, replayed = idempotency.IdempotentRequests(self.db).run(
            self.context.user_id, key, idempotency.fingerprint(request.method, request.path, body), run)
        headers = {**outcome.headers, **({idempotency.REPLAYED_HEADER: "true"} if replayed else {})}
        return Reply(outcome.body, status=outcome.status, headers=headers)

    @api("POST", "/users", allow=rule("users", "create"), body=UserCreateRequest, response=UserResponse, status=201,
         headers=(idempotency.HEADER,), tags=("users",), summary="Create a user")
    def create_user(self, request, body):
        def create():
            user = self._users().create(body)
            return Reply(users.to_dict(user), headers={"Location": f"{API_PREFIX}/users/{user.id}"})
        return self._once(request, body, create)

    @api("GET", "/users", allow=rule("users", "read"), query=PageQuery, response=UserPage, tags=("users",),
         summary="List users, oldest first")
    def list_users(self, request):
        limit, cursor = page_arguments(request)
        page = self._users().list(limit, cursor)
        return {"items": [users.to_dict(user) for user in page["items"]], "next_cursor": page["next_cursor"]}

    @api("GET", "/users/<user_id>", allow=rule("users", "read"), response=UserResponse, tags=("users",),
         summary="One user")
    def get_user(self, request, user_id):
        return users.to_dict(self._users().get(user_id))

    # --- notifications (reports: gateway.report_routes) -------------------------

    @api("GET", "/notifications", allow=rule("notifications", "read"), query=PageQuery, response=NotificationPage,
         tags=("notifications",), summary="The caller's notifications, unread first, then newest first")
    def list_notifications(self, request):
        limit, cursor = page_arguments(request)
        return self.notifications.list_notifications(limit, cursor)

    # --- the audit trail (gateway.audit_trail; GET /audit in gateway.audit_routes) ---

    # Each service records its entries as audit.recorded events (crm_common.audit);
    # the event id is the entry id, so a redelivery stores nothing twice.
    @event_handler("customers", "audit.recorded")
    def on_customers_audit(self, envelope):
        audit_trail.store_recorded(self.db, envelope)

    @event_handler("sales", "audit.recorded")
    def on_sales_audit(self, envelope):
        audit_trail.store_recorded(self.db, envelope)

    @event_handler("notifications", "audit.recorded")
    def on_notifications_audit(self, envelope):
        audit_trail.store_recorded(self.db, envelope)

    @event_handler("reporting", "audit.recorded")
    def on_reporting_audit(self, envelope):
        audit_trail.store_recorded(self.db, envelope)

    # The gateway's own entries from shared code (a key rotation) leave through its outbox too.
    @event_handler("gateway", "audit.recorded")
    def on_gateway_audit(self, envelope):
        audit_trail.store_recorded(self.db, envelope)

    # --- operations ----------------------------------------------------------

    @api("GET", "/ready", prefix="", public=True, response=ReadinessResponse, tags=("operations",),
         summary="Whether the broker and every service answer (503 when not)")
    def ready(self, request):
        pings = {}
        for name in SERVICES:
            proxy = getattr(self, name)
            pings[name] = partial(proxy.call_within, min(READY_TIMEOUT, proxy.timeout), "ping")
        report, all_up = check_readiness(pings, partial(broker_is_up, self.config["AMQP_URI"], READY_TIMEOUT))
        return Reply(report, status=200 if all_up else 503)

    @api("GET", "/openapi.json", prefix="", public=True, documented=False)
    def openapi(self, request):
        return Response(openapi_json(type(self)), content_type="application/json")

    @api("GET", "/docs", prefix="", public=True, documented=False)
    def docs(self, request):
        return Response(DOCS_PAGE, content_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": DOCS_CSP})

    @api("GET,POST,PUT,PATCH,DELETE", "/<path:unmatched>", public=True, documented=False)
    def unmatched(self, request, unmatched):
        """Any other URL under the API prefix: a problem document instead of werkzeug's HTML page."""
        allowed = allowed_methods([route for route in route_registry(type(self)) if route.documented],
                                  request.path)
        if allowed:
            raise MethodNotAllowed(allowed)
        raise NotFound("No API route has this URL.")
