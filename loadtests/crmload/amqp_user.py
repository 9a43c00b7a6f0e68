"""A locust user that calls the customers service over AMQP, without the gateway.

It speaks nameko's RPC wire format with pika: a JSON body
{"args": [...], "kwargs": {...}} published to the "nameko-rpc" exchange with
the routing key "<service>.<method>", reply_to the routing key of a reply queue
of its own bound to that exchange, and a correlation id; the reply is
{"result": ..., "error": ...}. Who is asking travels as nameko context headers
("nameko.<key>"), as the gateway's calls carry its RequestContext
(crm_common.context): here a viewer, the read-only role that sees every customer.

LOADTEST_AMQP_URI names the broker and vhost (default
amqp://guest:guest@127.0.0.1:5672/, `make up`'s); a request unanswered within
LOADTEST_RPC_TIMEOUT seconds (default 10) is a failure, and expires in its queue.
"""
import json
import logging
import os
import random
import time
import uuid

import pika
from locust import User, task

from crmload.personas import think_time

# pika logs every connection's opening and closing at INFO: one line per user.
logging.getLogger("pika").setLevel(logging.WARNING)

EXCHANGE = "nameko-rpc"
SERVICE = "customers"


class RpcError(Exception):
    """The service answered with an error, or not in time."""


class NamekoRpcClient:
    """One connection, one reply queue, one call at a time (as one locust user makes them)."""

    def __init__(self, amqp_uri, context, timeout):
        self.context_headers = {f"nameko.{key}": value for key, value in context.items()}
        self.timeout = timeout
        self.connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
        self.channel = self.connection.channel()
        # Passive: the services declare the exchange; a broker or vhost without
        # them fails here, by name, rather than with unroutable calls.
        self.channel.exchange_declare(EXCHANGE, passive=True)
        self.reply_queue = self.channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        self.channel.queue_bind(self.reply_queue, EXCHANGE, routing_key=self.reply_queue)
        self.channel.basic_consume(self.reply_queue, self._on_reply, auto_ack=True)
        # Publisher confirms with mandatory=True: a call no service queue takes
        # (the service is not running) raises UnroutableError at once.
        self.channel.confirm_delivery()
        self._replies = {}

    def _on_reply(self, channel, method, properties, body):
        self._replies[properties.correlation_id] = body

    def call(self, service, method, **kwargs):
        """The method's result; RpcError when it raised or did not answer in time. Returns (result, reply size)."""
        correlation_id = uuid.uuid4().hex
        self.channel.basic_publish(
            EXCHANGE, f"{service}.{method}", json.dumps({"args": [], "kwargs": kwargs}).encode(),
            properties=pika.BasicProperties(
                content_type="application/json", content_encoding="utf-8", reply_to=self.reply_queue,
                correlation_id=correlation_id, expiration=str(int(self.timeout * 1000)),
                headers={**self.context_headers, "nameko.request_id": correlation_id}),
            mandatory=True)
        deadline = time.monotonic() + self.timeout
        while correlation_id not in self._replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RpcError(f"{service}.{method} did not answer within {self.timeout:g} s")
            self.connection.process_data_events(time_limit=min(remaining, 0.5))
        body = self._replies.pop(correlation_id)
        reply = json.loads(body)
        if reply.get("error"):
            error = reply["error"]
            raise RpcError(f"{error.get('exc_type')}: {error.get('value')}")
        return reply["result"], len(body)

    def close(self):
        if self.connection.is_open:
            self.connection.close()


class CustomersRpcUser(User):
    """Reads customers straight from the customers service: the service's own capacity, no gateway."""

    weight = 1
    wait_time = think_time()

    def on_start(self):
        self.customer_ids = []
        self.rpc = NamekoRpcClient(
            os.environ.get("LOADTEST_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/"),
            {"user_id": "loadtest-amqp", "user_role": "viewer", "language": "en"},
            float(os.environ.get("LOADTEST_RPC_TIMEOUT", "10")))

    def on_stop(self):
        self.rpc.close()

    def measured_call(self, method, **kwargs):
        """Call and report the call to locust as request type AMQP, named service.method."""
        started = time.perf_counter()
        result, size, failure = None, 0, None
        try:
            result, size = self.rpc.call(SERVICE, method, **kwargs)
        except (RpcError, pika.exceptions.AMQPError) as error:
            failure = error
        self.environment.events.request.fire(
            request_type="AMQP", name=f"{SERVICE}.{method}", response_time=(time.perf_counter() - started) * 1000,
            response_length=size, exception=failure, context={})
        return result

    @task(3)
    def list_customers(self):
        page = self.measured_call("list_customers", filters={}, limit=20)
        if page and page["items"]:
            self.customer_ids = [customer["id"] for customer in page["items"]]

    @task(2)
    def get_customer(self):
        if not self.customer_ids:
            self.list_customers()
        if self.customer_ids:
            self.measured_call("get_customer", customer_id=random.choice(self.customer_ids))
