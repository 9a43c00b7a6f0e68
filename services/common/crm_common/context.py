"""Who is asking, and in which request: carried in nameko's worker context.

The gateway puts these keys into the context data of the worker that serves
an HTTP request; nameko copies context data into the headers of every RPC
call and event that worker makes, so each service sees the same request id
and actor without extra parameters. Events published through the outbox carry
them in the envelope instead, and consumers restore them from there.
"""
import uuid
from dataclasses import dataclass, asdict

from nameko.extensions import DependencyProvider

from crm_common.logs import bind_request_id

REQUEST_ID = "request_id"
USER_ID = "user_id"
USER_ROLE = "user_role"
TEAM_ID = "team_id"
LANGUAGE = "language"
# Where the request came from, for the audit trail: the client address the
# gateway saw (honouring CRM_TRUSTED_PROXIES) and the API key it used, if any.
CLIENT_IP = "client_ip"
API_KEY_ID = "api_key_id"

CONTEXT_KEYS = (REQUEST_ID, USER_ID, USER_ROLE, TEAM_ID, LANGUAGE, CLIENT_IP, API_KEY_ID)

ROLES = ("admin", "manager", "sales", "support", "viewer")


@dataclass(frozen=True)
class RequestContext:
    request_id: str | None = None
    user_id: str | None = None
    role: str | None = None
    team_id: str | None = None
    language: str = "en"
    client_ip: str | None = None
    api_key_id: str | None = None

    @classmethod
    def from_context_data(cls, data):
        return cls(
            request_id=data.get(REQUEST_ID),
            user_id=data.get(USER_ID),
            role=data.get(USER_ROLE),
            team_id=data.get(TEAM_ID),
            language=data.get(LANGUAGE) or "en",
            client_ip=data.get(CLIENT_IP),
            api_key_id=data.get(API_KEY_ID),
        )

    @classmethod
    def system(cls, request_id=None):
        """The context of work nobody asked for directly (timers, relays)."""
        return cls(request_id=request_id or new_request_id(), role="system")

    def to_context_data(self):
        data = {
            REQUEST_ID: self.request_id,
            USER_ID: self.user_id,
            USER_ROLE: self.role,
            TEAM_ID: self.team_id,
            LANGUAGE: self.language,
            CLIENT_IP: self.client_ip,
            API_KEY_ID: self.api_key_id,
        }
        return {key: value for key, value in data.items() if value is not None}

    @property
    def actor(self):
        """The actor as the event envelope records it."""
        return {"user_id": self.user_id, "role": self.role, "team_id": self.team_id}

    @property
    def is_admin(self):
        return self.role in ("admin", "system")

    def as_dict(self):
        return asdict(self)


def new_request_id():
    return uuid.uuid4().hex


class Context(DependencyProvider):
    """Gives a service method the RequestContext of the worker running it,
    and tags the worker's log lines with its request id."""

    def get_dependency(self, worker_ctx):
        return RequestContext.from_context_data(worker_ctx.data)

    def worker_setup(self, worker_ctx):
        bind_request_id(worker_ctx.data.get(REQUEST_ID))

    def worker_teardown(self, worker_ctx):
        bind_request_id(None)


class RunAs(DependencyProvider):
    """Lets a worker nobody called (a timer) act as someone: ``self.run_as(RequestContext.system())``.

    nameko builds the headers of each RPC call and event from the worker
    context's ``data`` at the moment of the call (``WorkerContext.context_data``
    copies it), so replacing the context keys there makes the calls that
    follow carry that actor and request id, as a gateway request's would.
    """

    def get_dependency(self, worker_ctx):
        def run_as(context: RequestContext):
            for key in CONTEXT_KEYS:
                worker_ctx.data.pop(key, None)
            worker_ctx.data.update(context.to_context_data())
            bind_request_id(context.request_id)
            return context
        return run_as
