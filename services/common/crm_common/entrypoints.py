"""nameko entrypoints with our defaults.

``rpc`` declares CrmError an expected exception: a refused request (not
found, invalid, conflict) is an answer to the caller, logged by nameko as a
warning rather than as a service error.

``rpc(read_only=True)`` declares a method that only reads: its unit of work
runs without a database transaction (crm_common.db), and a write in it fails.
"""
import logging
from functools import partial

from nameko.amqp.publish import Publisher
from nameko.constants import (
    AMQP_SSL_CONFIG_KEY, AMQP_URI_CONFIG_KEY, DEFAULT_SERIALIZER, LOGIN_METHOD_CONFIG_KEY, SERIALIZER_CONFIG_KEY,
)
from nameko.rpc import Responder, Rpc, get_rpc_exchange

from crm_common.errors import CrmError
from crm_common.metrics import RPC_REDELIVERED
from crm_common.rpc import BROKER_ERRORS

log = logging.getLogger(__name__)


class UnconfirmedResponder(Responder):
    """nameko's Responder, publishing the reply without waiting for the broker's confirm.

    A confirm guarantees nothing a caller can use here: the reply goes to the caller's own
    transient queue, so a broker that confirmed it and then died loses it just the same, and
    either way the caller sees no reply and times out. Waiting for it cost every RPC a round trip
    to the broker before the request was acknowledged (a tenth of a busy service's samples).
    """
    publisher_cls = partial(Publisher, use_confirms=False)


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

    def __init__(self, *args, read_only=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.read_only = read_only

    def handle_result(self, message, worker_ctx, result, exc_info):
        try:
            answered = self._reply(message, result, exc_info)
        except BROKER_ERRORS as error:
            log.warning("could not send the reply of %s (broker unreachable: %s); the caller will time out",
                        worker_ctx.entrypoint.method_name, error)
            return result, exc_info
        if message.delivery_info.get("redelivered"):
            RPC_REDELIVERED.labels(self.container.service_name, self.method_name).inc()
        return answered

    def _reply(self, message, result, exc_info):
        # nameko's Rpc.handle_result with UnconfirmedResponder in place of its Responder.
        config = self.container.config
        responder = UnconfirmedResponder(
            config[AMQP_URI_CONFIG_KEY], get_rpc_exchange(config),
            config.get(SERIALIZER_CONFIG_KEY, DEFAULT_SERIALIZER), message,
            ssl=config.get(AMQP_SSL_CONFIG_KEY), login_method=config.get(LOGIN_METHOD_CONFIG_KEY))
        result, exc_info = responder.send_response(result, exc_info)
        self.rpc_consumer.queue_consumer.ack_message(message)
        return result, exc_info


def rpc(fn=None, **kwargs):
    kwargs.setdefault("expected_exceptions", CrmError)
    if fn is None:
        return ResilientRpc.decorator(**kwargs)
    return ResilientRpc.decorator(**kwargs)(fn)
