"""What crmctl's subcommands share: failures with an exit code, and calling every service over RPC."""
from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
from nameko.standalone.rpc import ClusterRpcProxy

from crm_common.config import DEFAULT_AMQP_URI, env
from crm_common.context import RequestContext
from crm_common.errors import CrmError

# Every service of the CRM, in the order `make up` starts them.
SERVICES = ("customers", "sales", "notifications", "reporting", "gateway")
# Seconds to wait for each service's answer: re-encrypting a large table takes a while.
DEFAULT_RPC_TIMEOUT = 600.0


class CommandFailed(Exception):
    """A subcommand that could not do its job: crmctl prints the message and exits with ``exit_code``."""

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code


def amqp_uri():
    """The broker the services use (AMQP_URI, as in their config.yaml)."""
    return env("AMQP_URI", DEFAULT_AMQP_URI)


def add_rpc_arguments(parser, choose_services=True):
    parser.add_argument("--amqp-uri", default=None, help="RabbitMQ URI (default: $AMQP_URI, as the services)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_RPC_TIMEOUT,
                        help=f"seconds to wait for each service (default {DEFAULT_RPC_TIMEOUT:g})")
    if not choose_services:
        return
    parser.add_argument("--service", action="append", dest="services", choices=SERVICES, default=None,
                        help="only this service (repeatable; default: all)")


def call_every_service(method, uri=None, timeout=DEFAULT_RPC_TIMEOUT, services=SERVICES):
    """Call ``method`` on every service at once, as the system; {service: answer or Failure}.

    The calls carry a system context (role "system", a fresh request id), the
    one the services' admin-only jobs accept besides an admin's.
    """
    context = RequestContext.system()
    config = {"AMQP_URI": uri or amqp_uri()}
    results = {}
    with ClusterRpcProxy(config, context_data=context.to_context_data(), timeout=timeout) as cluster:
        pending = {}
        for service in services:
            try:
                pending[service] = getattr(cluster[service], method).call_async()
            except UnknownService:
                results[service] = Failure(f"not running (no {service} RPC queue)")
        for service, reply in pending.items():
            try:
                results[service] = reply.result()
            except RpcTimeout:
                results[service] = Failure(f"no answer within {timeout:g} s")
            except UnknownService:
                results[service] = Failure(f"not running (no {service} RPC queue)")
            except CrmError as error:
                results[service] = Failure(f"{error.title}: {error.detail}")
            except RemoteError as error:
                results[service] = Failure(f"{error.exc_type}: {error.value}")
    return {service: results[service] for service in services}


class Failure:
    """A service that did not do what it was asked, and why."""

    def __init__(self, reason):
        self.reason = reason

    def __repr__(self):
        return f"Failure({self.reason!r})"

    def __str__(self):
        return self.reason
