"""Graceful shutdown: a stopping service answers what it runs, but waits a bounded time."""
import time

import eventlet
from eventlet.event import Event
from nameko.standalone.rpc import ServiceRpcProxy

from crm_common.entrypoints import rpc
from crm_common.shutdown import shutdown_deadline
from crm_common.testing import wait_until


started = {"count": 0}
release = Event()


class SlowService:
    name = "slow"

    @shutdown_deadline
    def ops_shutdown_deadline(self):
        """Never called."""

    @rpc
    def work(self):
        started["count"] += 1
        release.wait()
        return "done"


def _stop_in_background(container):
    began = time.monotonic()
    thread = eventlet.spawn(container.stop)
    return thread, began


def _takes_no_new_requests(container):
    """The stop has begun: the RPC entrypoints have left the service's queue
    (nameko stops entrypoints first, then waits for the running workers)."""
    consumers = {entrypoint.rpc_consumer for entrypoint in container.entrypoints
                 if hasattr(entrypoint, "rpc_consumer")}
    return bool(consumers) and all(c._unregistered_from_queue_consumer.ready() for c in consumers)


def test_a_request_running_at_stop_is_finished_and_answered(container_factory, rabbit_config, monkeypatch):
    global release
    release = Event()
    started["count"] = 0
    monkeypatch.setenv("CRM_SHUTDOWN_GRACE_SECONDS", "10")
    container = container_factory(SlowService, rabbit_config)
    container.start()
    with ServiceRpcProxy("slow", rabbit_config, timeout=15) as slow:
        reply = slow.work.call_async()
        wait_until(lambda: started["count"] == 1, 10, message="the worker to start")
        stopping, _ = _stop_in_background(container)
        wait_until(lambda: _takes_no_new_requests(container), 10,
                   message="the stop to begin (RPC entrypoints stopped)")
        assert not stopping.dead  # the stop waits for the request still in hand
        release.send()
        assert reply.result() == "done"
        stopping.wait()
    assert container._died.ready()


def test_a_worker_that_never_finishes_is_killed_after_the_grace(container_factory, rabbit_config, monkeypatch):
    global release
    release = Event()  # never sent
    started["count"] = 0
    monkeypatch.setenv("CRM_SHUTDOWN_GRACE_SECONDS", "0.5")
    container = container_factory(SlowService, rabbit_config)
    container.start()
    with ServiceRpcProxy("slow", rabbit_config, timeout=15) as slow:
        slow.work.call_async()
        wait_until(lambda: started["count"] == 1, 10, message="the worker to start")
        stopping, began = _stop_in_background(container)
        wait_until(container._died.ready, 10, message="the container to die")
        assert time.monotonic() - began < 5
        # `nameko run` exits once the container died; the stop itself may still
        # wait for the consumer thread the kill ended.
        stopping.kill()
