"""The gateway's HTTP entrypoint: everything every API request goes through.

``@api(method, url, ...)`` declares a route and what it needs: what it does,
``allow=rule(resource, action)``, from which the permission matrix
(gateway.permissions) says which roles may call it, or that it is ``public``;
its body and response schemas, its success status.
For each request the entrypoint, before a worker runs:

- takes the caller's X-Request-ID when it looks sane, else makes one, and
  returns it in the response;
- verifies the Bearer access token or the X-API-Key (unless the route is
  public), the role, and for a key its scopes (gateway.api_keys);
- spends one of the caller's rate-limit tokens (gateway.ratelimit), 429 when
  none is left, and reports the RateLimit-* fields on every answer;
- reads a JSON body (400 when it is not JSON), or, for an upload route
  (``form``), a multipart/form-data body of at most ``max_body`` bytes;

then puts request id, language and caller into the worker's context data,
which nameko forwards on every RPC the worker makes. Every answer carries the
security headers (crm_common.web), Cache-Control: no-store when it needed a
caller, and CORS fields for origins listed in CRM_CORS_ORIGINS (OPTIONS
preflights are answered here, for every route). Every CrmError, raised
here or arriving typed from a service, becomes application/problem+json with
its title and messages in the caller's language; anything else becomes a 500
that says nothing about its cause. Each request is counted and timed by
route template.

The route registry (``route_registry``) is read from the service class: the
OpenAPI document is built from it.
"""
import inspect
import json
import logging
import re
import sys
import time
from dataclasses import dataclass, field, replace
from functools import cached_property, partial

from eventlet.event import Event
from nameko.exceptions import ContainerBeingKilled, UnknownService
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR, SharedExtension
from prometheus_client import Gauge
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Response

from crm_common import jsonutil
from crm_common.config import env
from crm_common.db import Database
from crm_common.context import (
    API_KEY_ID, CLIENT_IP, LANGUAGE, REQUEST_ID, TEAM_ID, USER_ID, USER_ROLE, RequestContext, new_request_id,
)
from crm_common.errors import (
    PROBLEM_CONTENT_TYPE, BadRequest, CrmError, Forbidden, NotFound, RateLimited, ServiceUnavailable, Unauthorized,
    ValidationFailed, problem_from_error,
)
from crm_common.logs import bind_request_id
from crm_common.metrics import HTTP_DURATION, HTTP_REQUESTS, HTTP_SHED
from crm_common.pagination import check_limit
from crm_common.web import HttpEndpoint, add_security_headers

from gateway import api_keys, audit_trail, i18n, permissions, ratelimit
from gateway.dependencies import SigningKeys
from gateway.throttle import client_address

log = logging.getLogger(__name__)

LIVE_INSTANCES = Gauge(
    "crm_gateway_live_instances",
    "Gateway instances this one counts as live (PostgreSQL); it divides each rate limit by this number",
)

API_PREFIX = "/api/v1"
JSON_CONTENT_TYPE = "application/json"
REQUEST_ID_HEADER = "X-Request-ID"
MAX_BODY_BYTES = 1024 * 1024
# Echoed into logs and headers: letters, digits and a few separators only.
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
WERKZEUG_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
ETAG_VERSION = re.compile(r'^(?:W/)?"?(\d{1,18})"?$')
INTERNAL_ERROR_DETAIL = "Something went wrong on our side. Quote the request id when you report it."
# What a browser on an allowed origin may send and read (CORS).
CORS_ALLOW_HEADERS = ("Authorization", "Content-Type", "Accept-Language", api_keys.HEADER, "If-Match",
                      "If-None-Match", "Idempotency-Key", REQUEST_ID_HEADER)
CORS_EXPOSE_HEADERS = (REQUEST_ID_HEADER, "ETag", "Location", "Content-Disposition", "Idempotent-Replayed",
                       "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
CORS_MAX_AGE = 600


# Errors that only the gateway answers with; they never cross RPC, so they
# are not registered with nameko.
class MethodNotAllowed(CrmError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"

    def __init__(self, allowed_methods):
        super().__init__(f"This URL accepts {', '.join(allowed_methods)}.")
        self.allowed_methods = allowed_methods


class PayloadTooLarge(CrmError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class Overloaded(CrmError):
    """Load shedding: more API requests are waiting for a worker than CRM_GATEWAY_MAX_QUEUED."""
    status, code, title = 503, "overloaded", "The service is overloaded"
    retry_after = 1  # seconds, sent as Retry-After


@dataclass(frozen=True)
class Route:
    """One API route, as declared by ``@api``."""

    method: str
    url: str  # werkzeug rule: /api/v1/customers/<customer_id>
    summary: str = ""
    description: str = ""
    tags: tuple = ()
    body: type | None = None  # marshmallow schema of the request body
    # marshmallow schema documenting a multipart/form-data body (file uploads);
    # the route then gets ``form`` (text fields) and ``files`` (uploaded files).
    form: type | None = None
    max_body: int = MAX_BODY_BYTES
    # Media types of a file the route answers with (e.g. text/csv), instead of JSON.
    downloads: tuple = ()
    # Other success statuses, with the same response schema: ((202, "Queued as a job"),)
    also_answers: tuple = ()
    response: type | None = None  # marshmallow schema of the success response
    query: type | None = None  # marshmallow schema of the query parameters
    status: int = 200
    permission: permissions.Rule | None = None  # what the route does (None only when public)
    roles: tuple | None = None  # the roles the matrix admits; None: any signed-in user (or public)
    public: bool = False  # no token needed
    headers: tuple = ()  # request headers the route reads, e.g. ("If-Match",)
    documented: bool = True
    operation_id: str | None = None

    @cached_property
    def template(self):
        """The URL as OpenAPI writes it (/api/v1/customers/{customer_id}); also the metrics label."""
        return WERKZEUG_VARIABLE.sub(r"{\1}", self.url)

    @property
    def path_parameters(self):
        return WERKZEUG_VARIABLE.findall(self.url)


@dataclass
class Reply:
    """What a route returns when the default (JSON body, the route's status) is not enough."""

    data: object = None
    status: int | None = None
    headers: dict = field(default_factory=dict)


class HttpPolicy(SharedExtension):
    """What every API request of one gateway instance shares: its rate limiter
    and the configured CORS origins and limit (read at start).

    On PostgreSQL the limiter divides each limit among the live gateway
    instances; a managed thread keeps this instance's heartbeat and the count
    of the others (gateway.ratelimit.LiveInstances) from start to stop.
    """

    def setup(self):
        self.rate_limit = ratelimit.configured_limit()
        self.limiter = None
        self._stopping = Event()
        # Load shedding. nameko's HTTP server gives every connection a green
        # thread (up to eventlet's 1024), and spawn_worker waits, unbounded and
        # unseen, for a free worker: a burst the instance cannot serve would
        # queue until clients time out, then keep the workers busy with answers
        # nobody reads. Instead at most max_workers + CRM_GATEWAY_MAX_QUEUED API
        # requests are in the entrypoint at once (authenticating, waiting or
        # running); one more is answered 503 at once, with Retry-After.
        # Eventlet switches threads only on I/O, so a plain counter is exact.
        max_workers = self.container.max_workers
        self.max_queued = max(0, int(env("CRM_GATEWAY_MAX_QUEUED", str(2 * max_workers))))
        self.max_in_flight = max_workers + self.max_queued
        self.in_flight = 0
        self.cors_origins = frozenset(
            origin.strip().rstrip("/") for origin in env("CRM_CORS_ORIGINS", "").split(",") if origin.strip())

    def start(self):
        # Here, not in setup: the database's engine exists once every extension is set up.
        database = next(dependency for dependency in self.container.dependencies if isinstance(dependency, Database))
        self.limiter = ratelimit.limiter_for(database.engine, ratelimit.configured_heartbeat())
        if self.limiter.instances is None:
            LIVE_INSTANCES.set(1)  # SQLite: this instance alone
        else:
            self._beating = self.container.spawn_managed_thread(self._keep_beating, identifier="gateway_heartbeat")

    def _keep_beating(self):
        instances = self.limiter.instances
        while True:
            try:
                LIVE_INSTANCES.set(instances.beat())
            except Exception:
                # Never out of this loop: an error ending a managed thread kills the container.
                # The last count stays in force (gateway.ratelimit: tolerance).
                log.exception("gateway heartbeat failed; the last count of live instances stays in force")
            if self._stopping.wait(instances.interval):
                return

    def stop(self):
        if not self._stopping.ready():
            self._stopping.send(True)
        instances = self.limiter.instances if self.limiter else None
        if instances is not None:
            # A beat still under way would write the row again after it was removed.
            self._beating.wait()
            # The others widen their share at their next heartbeat instead of three.
            try:
                instances.leave()
            except Exception:
                log.exception("could not remove this gateway's heartbeat; it expires by itself")

    def kill(self):
        # No clean-up: the row expires after three heartbeats.
        if not self._stopping.ready():
            self._stopping.send(True)


class ApiEndpoint(HttpEndpoint):
    keys = SigningKeys()
    policy = HttpPolicy()

    def __init__(self, method, url, *, summary="", description="", tags=(), body=None, response=None,
                 query=None, status=200, allow=None, public=False, headers=(), documented=True,
                 prefix=API_PREFIX, form=None, max_body=MAX_BODY_BYTES, downloads=(), also_answers=(),
                 **kwargs):
        # Fails when the gateway is imported: no route is served without a decision on who may call it.
        if public == (allow is not None):
            raise ValueError(f"{method} {url}: declare either allow=permissions.rule(resource, action) "
                             "or public=True")
        roles = None if allow is None or allow.every_role else allow.roles
        kwargs.setdefault("expected_exceptions", CrmError)
        super().__init__(method, prefix + url, **kwargs)
        self.route = Route(
            method=method, url=prefix + url, summary=summary, description=description, tags=tuple(tags),
            body=body, response=response, query=query, status=status, form=form, max_body=max_body,
            downloads=tuple(downloads), also_answers=tuple(also_answers),
            permission=allow, roles=roles, public=public, headers=tuple(headers),
            documented=documented,
        )

    def handle_request(self, request):
        started = time.perf_counter()
        request.shallow = False
        request_id = incoming_request_id(request) or new_request_id()
        language = preferred_language(request)
        bind_request_id(request_id)
        try:
            if request.method == "OPTIONS":
                response = self._preflight(request)
            elif self.route.url.startswith(API_PREFIX + "/"):
                response = self._serve_bounded(request, request_id, language)
            else:
                # /ready, /docs, /openapi.json (and /health, /metrics, on another handler) are never shed.
                response = self._serve(request, request_id, language)
        finally:
            bind_request_id(None)
        response.headers[REQUEST_ID_HEADER] = request_id
        add_security_headers(response)
        if not self.route.public:
            # Answers for a caller (and refusals) must stay out of shared and browser caches.
            response.headers["Cache-Control"] = "no-store"
        self._add_cors(request, response)
        HTTP_REQUESTS.labels(self.route.template, request.method, str(response.status_code)).inc()
        HTTP_DURATION.labels(self.route.template).observe(time.perf_counter() - started)
        return response

    def _serve_bounded(self, request, request_id, language):
        policy = self.policy
        if policy.in_flight >= policy.max_in_flight:
            HTTP_SHED.labels(self.route.template).inc()
            return self.problem_response(
                Overloaded("Too many requests are waiting; try again in a moment."), request, request_id, language)
        policy.in_flight += 1
        try:
            return self._serve(request, request_id, language)
        finally:
            policy.in_flight -= 1

    def _serve(self, request, request_id, language):
        limit_headers = {}
        spawned = False
        # Where the request came from, for the audit trail (X-Forwarded-For only from CRM_TRUSTED_PROXIES).
        context_data = {REQUEST_ID: request_id, LANGUAGE: language}
        address = client_address(request.remote_addr, request.headers.get("X-Forwarded-For"))
        if address:
            context_data[CLIENT_IP] = address
        try:
            if not self.route.public:
                caller = self._authenticate(request)
                # Known before the role check, so that a refusal is audited with its actor.
                context_data[USER_ID] = caller.user_id
                context_data[USER_ROLE] = caller.role
                if caller.team_id is not None:
                    context_data[TEAM_ID] = caller.team_id
                if isinstance(caller, api_keys.KeyPrincipal):
                    context_data[API_KEY_ID] = caller.key_id
                # Counted before the role check: refused requests are requests too.
                limit_headers = self._spend_rate_limit(caller)
                if self.route.roles is not None and caller.role not in self.route.roles:
                    raise Forbidden("Your role may not do this.")
            args, kwargs = self.get_entrypoint_parameters(request)
            self.check_signature(args, kwargs)
            finished = Event()
            spawned = True
            self.container.spawn_worker(self, args, kwargs, context_data=context_data,
                                        handle_result=partial(self.handle_result, finished))
            response = finished.wait()
        except Exception as exc:
            if not spawned and not isinstance(exc, CrmError):
                # No worker ran, so nobody has logged this one's traceback yet.
                log.exception("unexpected error before a worker ran for %s", self.route.template)
            response = self.problem_response(exc, request, request_id, language)
            limit_headers = getattr(exc, "rate_limit_headers", limit_headers)
            if response.status_code == 403:
                self._audit_refusal(request, context_data, response)
        response.headers.update(limit_headers)
        return response

    def _audit_refusal(self, request, context_data, response):
        """Every 403 the gateway answers (its own or a service's) is audited, in a transaction of
        its own: nothing else is written for a refused request."""
        try:
            detail = {"method": request.method, "route": self.route.template, "path": request.path}
            reason = jsonutil.loads(response.get_data()).get("detail")
            if reason:
                detail["reason"] = reason
            with self._database.Session() as session:
                audit_trail.write_entry(
                    session, RequestContext.from_context_data(context_data), "permission.refused", "permission",
                    None, detail=detail, outcome="refused")
                session.commit()
        except Exception:
            # The caller gets their 403 all the same; the failure is in the log for operators.
            log.exception("could not audit a refused request to %s", self.route.template)

    def _authenticate(self, request):
        presented_key = request.headers.get(api_keys.HEADER)
        if presented_key is not None:
            if "Authorization" in request.headers:
                raise BadRequest(f"Send either an access token or an {api_keys.HEADER}, not both.")
            return self._authenticate_key(presented_key)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Sign in first, then send the access token as Authorization: Bearer <token>.")
        return self.keys.access_tokens.verify(token.strip())

    def _authenticate_key(self, presented_key):
        scope = api_keys.scope_of(self.route.method, self.route.tags)
        # Checked before the key: refusing key routes and user routes costs no database round trip.
        if scope is None:
            raise Forbidden("API keys may not use this operation; sign in as a user.")
        with self._database.Session() as session:
            principal = api_keys.ApiKeys(session).authenticate(presented_key)
        if scope not in principal.scopes:
            raise Forbidden(f"This API key lacks the scope {scope}.")
        return principal

    @cached_property
    def _database(self):
        return next(dependency for dependency in self.container.dependencies if isinstance(dependency, Database))

    def _spend_rate_limit(self, caller):
        """RateLimit-* headers for the answer; RateLimited (carrying them) when the caller has no token left."""
        if isinstance(caller, api_keys.KeyPrincipal):
            principal, limit = f"key:{caller.key_id}", caller.rate_limit_per_minute or self.policy.rate_limit
        else:
            principal, limit = f"user:{caller.user_id}", self.policy.rate_limit
        if not limit:
            return {}
        decision = self.policy.limiter.take(principal, limit)
        if not decision.allowed:
            error = RateLimited(f"At most {limit} requests a minute; try again in {decision.retry_after} s.")
            error.rate_limit_headers = decision.headers()
            raise error
        return decision.headers()

    # --- CORS ----------------------------------------------------------------

    def _allowed_origin(self, request):
        origin = request.headers.get("Origin")
        return origin if origin and origin.rstrip("/") in self.policy.cors_origins else None

    def _add_cors(self, request, response):
        if self.policy.cors_origins:
            # The answer differs by Origin: a cache must not hand one origin's answer to another.
            response.headers.add("Vary", "Origin")
        if self._allowed_origin(request) is None:
            return
        response.headers["Access-Control-Allow-Origin"] = request.headers["Origin"]
        if request.method != "OPTIONS":
            response.headers["Access-Control-Expose-Headers"] = ", ".join(CORS_EXPOSE_HEADERS)

    def _preflight(self, request):
        """OPTIONS: the methods this URL accepts; for an allowed origin also what a browser may send."""
        methods = allowed_methods([route for route in route_registry(self.container.service_cls)
                                   if route.documented], request.path)
        response = Response(status=204, headers={"Allow": ", ".join(methods)})
        if self._allowed_origin(request) is not None:
            response.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
            response.headers["Access-Control-Allow-Headers"] = ", ".join(CORS_ALLOW_HEADERS)
            response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE)
        return response

    def get_url_rule(self):
        # Every route answers OPTIONS (CORS preflights) without a worker: see _preflight.
        return Rule(self.url, methods=self.route.method.split(",") + ["OPTIONS"])

    def get_entrypoint_parameters(self, request):
        kwargs = dict(request.path_values)
        if any("\x00" in str(value) for value in kwargs.values()):
            # No record's id holds a NUL: the URL names nothing (and PostgreSQL could not even look).
            raise NotFound("Nothing is found at this address.")
        refuse_nul_characters(request.args.lists(), "query")
        if self.route.body is not None:
            kwargs["body"] = read_json_body(request)
            refuse_nul_characters(_json_strings(kwargs["body"]), "body")
        if self.route.form is not None:
            kwargs["form"], kwargs["files"] = read_form(request, self.route.max_body)
            refuse_nul_characters(kwargs["form"].lists(), "form")
        return (request,), kwargs

    def handle_result(self, finished, worker_ctx, result, exc_info):
        # Runs in the worker, before its dependencies tear down: the response
        # is built while the database session is still open.
        response = None
        if exc_info is None:
            try:
                response = self.response_from_result(result)
            except Exception:
                exc_info = sys.exc_info()
                log.exception("could not build the response of %s", self.route.template)
        if exc_info is None:
            finished.send(response)
        else:
            finished.send_exception(*exc_info)
        return result, exc_info

    def response_from_result(self, result):
        if isinstance(result, Response):
            return result
        reply = result if isinstance(result, Reply) else Reply(result)
        status = reply.status or self.route.status
        if status in (204, 304):
            return Response(status=status, headers=reply.headers)
        return Response(jsonutil.dumps(reply.data), status=status, headers=reply.headers,
                        content_type=JSON_CONTENT_TYPE)

    def problem_response(self, exc, request, request_id, language):
        if isinstance(exc, CrmError):
            error = exc
        elif isinstance(exc, UnknownService):
            error = ServiceUnavailable(f"The {exc._service_name} service is not running.")
        elif isinstance(exc, ContainerBeingKilled):
            error = ServiceUnavailable("The gateway is shutting down; try again.")
        else:
            # The worker has logged the traceback already; the caller learns nothing of it.
            log.error("answering 500 to %s %s: %s", request.method, self.route.template, type(exc).__name__)
            error = CrmError(INTERNAL_ERROR_DETAIL)
        return problem_response(error, request_id, language)


api = ApiEndpoint.decorator


def problem_response(error, request_id, language):
    body = problem_from_error(error, request_id, title=i18n.title(error.code, error.title, language))
    if body.get("errors"):
        body["errors"] = i18n.field_errors(body["errors"], language)
    response = Response(jsonutil.dumps(body), status=error.status, content_type=PROBLEM_CONTENT_TYPE)
    response.headers["Content-Language"] = language
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="crm"'
    if getattr(error, "retry_after", None):
        response.headers["Retry-After"] = str(error.retry_after)
    allowed = getattr(error, "allowed_methods", None)
    if allowed:
        response.headers["Allow"] = ", ".join(allowed)
    return response


# --- reading requests --------------------------------------------------------

def incoming_request_id(request):
    value = request.headers.get(REQUEST_ID_HEADER, "")
    return value if SANE_REQUEST_ID.match(value) else None


def preferred_language(request):
    return request.accept_languages.best_match(i18n.LANGUAGES, default=i18n.ENGLISH)


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def read_json_body(request):
    """The parsed JSON body; None when there is none. BadRequest when it is not JSON."""
    request.max_content_length = MAX_BODY_BYTES
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise PayloadTooLarge(f"The body may be at most {MAX_BODY_BYTES} bytes.")
    if not raw.strip():
        return None
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as error:
        raise BadRequest(f"The body is not valid JSON: {error}")


def refuse_nul_characters(named_values, where):
    """422 naming each field whose text holds a NUL character.

    PostgreSQL cannot store NUL in text (psycopg2 raises ValueError, which
    would be a 500 from whichever service got the value); no name, note or
    search term legitimately holds one, so it is refused here, once for all.
    """
    errors = {}
    for name, values in named_values:
        if "\x00" in name or any(isinstance(value, str) and "\x00" in value for value in values):
            errors[name.replace("\x00", "\\x00") or where] = ["Must not contain NUL (\\x00) characters."]
    if errors:
        raise ValidationFailed(f"The {where} contains NUL characters.", errors=errors)


def _json_strings(value, path=""):
    """(dotted path, [string]) for every string and key of a parsed JSON document."""
    if isinstance(value, str):
        yield path, [value]
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            yield child, [key]
            yield from _json_strings(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_strings(item, f"{path}.{index}" if path else str(index))


def read_form(request, max_bytes):
    """The text fields and files of a multipart/form-data (or urlencoded) body, at most ``max_bytes``."""
    if request.mimetype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise BadRequest("Send this as multipart/form-data.")
    request.max_content_length = max_bytes
    try:
        return request.form, request.files
    except RequestEntityTooLarge:
        raise PayloadTooLarge(f"The upload may be at most {max_bytes // (1024 * 1024)} MB.")


def page_arguments(request):
    """(limit, cursor) from the query; None for what is absent. 422 for a bad limit."""
    limit = request.args.get("limit")
    return (check_limit(limit) if limit is not None else None), (request.args.get("cursor") or None)


TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes"), ("false", "0", "no", "")


def query_flag(request, name):
    """A true/false query parameter (absent: false); 422 naming it for anything else."""
    value = request.args.get(name, "").strip().lower()
    if value not in TRUE_WORDS + FALSE_WORDS:
        raise ValidationFailed(f"{name} must be true or false.", {name: ["Use true or false."]})
    return value in TRUE_WORDS


def etag(version):
    return f'W/"{version}"'


def if_match_version(request):
    """The version an If-Match header names (W/"3", "3" or 3), or None without one."""
    value = request.headers.get("If-Match")
    if value is None or value.strip() == "*":
        return None
    match = ETAG_VERSION.match(value.strip())
    if match is None:
        raise BadRequest('If-Match must be the ETag of the record, like W/"3".')
    return int(match.group(1))


def if_none_match_version(request):
    value = request.headers.get("If-None-Match", "").strip()
    match = ETAG_VERSION.match(value)
    return int(match.group(1)) if match else None


# --- the registry ------------------------------------------------------------

def route_registry(service_cls):
    """Every @api route of a service class, in URL order."""
    routes = []
    for name, member in inspect.getmembers(service_cls, callable):
        for entrypoint in getattr(member, ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if isinstance(entrypoint, ApiEndpoint):
                routes.append(replace(entrypoint.route, operation_id=name))
    return sorted(routes, key=lambda route: (route.url, route.method))


def allowed_methods(routes, path):
    """The methods some route accepts at ``path`` (empty when no route has that path)."""
    url_map = Map([Rule(route.url, methods=route.method.split(",")) for route in routes])
    return sorted(url_map.bind("localhost").allowed_methods(path))
