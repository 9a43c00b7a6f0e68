"""nameko entrypoints with our defaults.

``rpc`` declares CrmError an expected exception: a refused request (not
found, invalid, conflict) is an answer to the caller, logged by nameko as a
warning rather than as a service error.
"""
import logging

from nameko.rpc import Rpc

from crm_common.errors import CrmError
from crm_common.metrics import RPC_REDELIVERED
from crm_common.rpc import BROKER_ERRORS

log = logging.getLogger(__name__)


class ResilientRpc(Rpc):
    """nameko's RPC entrypoint, surviving a broker that is down when the reply is sent.

    nameko publishes the reply from the worker thread; when the broker is
    unreachable (restarting), the publish raises after its retries, the worker
    thread dies with the error, and nameko then kills the whole container: the
    service process exits and never reconnects. The caller has given up by
    then (its own timeout), so the reply is dropped with a warning; the request
    stays unacknowledged and the broker reclaims it (an expired one is dropped).

    Requests the broker redelivered (an instance died holding them) and that
    are then answered are counted in crm_rpc_redelivered_total: the record of
    the consumer itself, where RabbitMQ's own statistics are only sampled.
    """

    def handle_result(self, message, worker_ctx, result, exc_info):
        try:
            answered = super().handle_result(message, worker_ctx, result, exc_info)
        except BROKER_ERRORS as error:
            log.warning("could not send the reply of %s (broker unreachable: %s); the caller will time out",
                        worker_ctx.entrypoint.method_name, error)
            return result, exc_info
        if message.delivery_info.get("redelivered"):
            RPC_REDELIVERED.labels(self.container.service_name, self.method_name).inc()
        return answered


def rpc(fn=None, **kwargs):
    kwargs.setdefault("expected_exceptions", CrmError)
    if fn is None:
        return ResilientRpc.decorator(**kwargs)
    return ResilientRpc.decorator(**kwargs)(fn)
