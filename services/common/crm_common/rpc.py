"""RPC to the services, bounded in time (the gateway's calls, reporting's calls to its sources).

In nameko 2.14.1 a service's ``RpcProxy`` waits for a reply forever. Here
every call is bounded by CRM_RPC_TIMEOUT (or the proxy's own timeout) (eventlet.Timeout around publish and
wait), and the request message carries the same time as its AMQP expiration,
so a request nobody picked up in time is dropped by RabbitMQ instead of
running after the caller has given up. A service that does not answer, or
has no queue at all, becomes ServiceUnavailable (503) naming it.

Proxies are nameko dependencies: nameko builds one per worker.
"""
import logging
import socket

import eventlet
from amqp.exceptions import ConnectionError as AmqpConnectionError
from eventlet.corolocal import local
from kombu import Connection
from kombu.exceptions import OperationalError
from nameko.exceptions import UnknownService
from nameko.messaging import QueueConsumer
from nameko.rpc import ReplyListener, RpcProxy, ServiceProxy

from crm_common.config import rpc_timeout
from crm_common.errors import ServiceUnavailable

log = logging.getLogger(__name__)

BROKER_ERRORS = (OperationalError, AmqpConnectionError, socket.error)


def _surviving_broker_loss(settle):
    """nameko's QueueConsumer.ack_message / requeue_message, not raising when the connection dies.

    nameko skips a message whose connection is already gone and ignores
    amqp's ConnectionError, but a socket reset in the middle of the ack
    (ConnectionResetError, seen during `rabbitmqctl stop_app`) escapes, ends
    the worker thread with an error, and nameko then kills the whole
    container: the service exits instead of reconnecting (seen in the gateway,
    acking an RPC reply, and in reporting, acking an event). Every entrypoint
    and reply listener settles messages here, so this is patched once, for
    all. A message not acknowledged is redelivered by the broker; consumers
    are idempotent and RPC requests expire.
    """
    def tolerant(self, message):
        try:
            settle(self, message)
        except BROKER_ERRORS as error:
            log.warning("could not %s a message, the broker connection was lost (%s); "
                        "the broker will redeliver it", settle.__name__.split("_")[0], error)
    tolerant.__name__ = settle.__name__
    tolerant.surviving_broker_loss = True
    return tolerant


if not getattr(QueueConsumer.ack_message, "surviving_broker_loss", False):
    QueueConsumer.ack_message = _surviving_broker_loss(QueueConsumer.ack_message)
    QueueConsumer.requeue_message = _surviving_broker_loss(QueueConsumer.requeue_message)


class ForgettingReplyListener(ReplyListener):
    """nameko's reply listener, able to drop the wait of a call that timed out.

    nameko registers an Event per call under a correlation id it does not
    return, and removes it only when the reply arrives: a call that never gets
    its reply would leave its Event behind for good. The listener remembers
    the correlation id of the latest call made by each green thread (one
    thread makes one call at a time), so the caller that timed out can remove
    its own entry.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._latest_call = local()

    def get_reply_event(self, correlation_id):
        self._latest_call.correlation_id = correlation_id
        return super().get_reply_event(correlation_id)

    def start_call(self):
        self._latest_call.correlation_id = None

    def forget_latest_call(self):
        correlation_id = getattr(self._latest_call, "correlation_id", None)
        self._latest_call.correlation_id = None
        if correlation_id is not None:
            self._reply_events.pop(correlation_id, None)

    @property
    def pending_replies(self):
        """How many calls are waiting for a reply (for tests and diagnosis)."""
        return len(self._reply_events)


class BoundedRpcProxy(RpcProxy):
    """An RpcProxy whose calls give up after ``timeout`` seconds (CRM_RPC_TIMEOUT by default)."""

    rpc_reply_listener = ForgettingReplyListener()

    def __init__(self, target_service, timeout=None, **options):
        super().__init__(target_service, **options)
        self.configured_timeout = timeout

    def setup(self):
        super().setup()
        self.timeout = self.configured_timeout or rpc_timeout()
        # nameko hands these options to the Publisher of each call, which hands
        # ``expiration`` to kombu: seconds there (kombu writes milliseconds into
        # the AMQP property), despite the Publisher docstring saying milliseconds.
        self.options = dict(self.options, expiration=self.timeout)

    def get_dependency(self, worker_ctx):
        proxy = ServiceProxy(worker_ctx, self.target_service, self.rpc_reply_listener, **self.options)
        return BoundedServiceProxy(proxy, self.target_service, self.timeout, self.rpc_reply_listener)


class BoundedServiceProxy:
    """``proxy.method(*args)`` calls the service and waits at most the timeout."""

    def __init__(self, proxy, service_name, timeout, reply_listener):
        self._proxy = proxy
        self.service_name = service_name
        self.timeout = timeout
        self._reply_listener = reply_listener

    def __getattr__(self, method_name):
        if method_name.startswith("_"):
            raise AttributeError(method_name)

        def call(*args, **kwargs):
            return self.call_within(self.timeout, method_name, *args, **kwargs)

        call.__name__ = method_name
        return call

    def call_within(self, seconds, method_name, *args, **kwargs):
        """Call ``method_name``, waiting at most ``seconds``. (Waiting longer than the
        proxy's own timeout gains nothing: the request expires in its queue by then.)"""
        method = getattr(self._proxy, method_name)
        self._reply_listener.start_call()
        deadline = eventlet.Timeout(seconds)
        try:
            return method.call_async(*args, **kwargs).result()
        except eventlet.Timeout as timeout:
            if timeout is not deadline:
                raise
            self._reply_listener.forget_latest_call()
            raise ServiceUnavailable(
                f"The {self.service_name} service did not answer within {seconds:g} s.")
        except UnknownService:
            self._reply_listener.forget_latest_call()
            raise ServiceUnavailable(f"The {self.service_name} service is not running.")
        except BROKER_ERRORS as error:
            self._reply_listener.forget_latest_call()
            log.warning("calling %s.%s failed: %r", self.service_name, method_name, error)
            raise ServiceUnavailable(
                f"The {self.service_name} service cannot be reached: the message broker is down.")
        finally:
            deadline.cancel()


def broker_is_up(amqp_uri, seconds):
    """True when a new AMQP connection opens within ``seconds``."""
    connection = Connection(amqp_uri, connect_timeout=seconds)
    try:
        with eventlet.Timeout(seconds):
            connection.connect()
        return True
    except (Exception, eventlet.Timeout):
        return False
    finally:
        connection.release()
