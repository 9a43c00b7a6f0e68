"""Scaling one service out, and taking an instance away, as an operator does.

Three customers instances share one RPC queue. Stopping one with SIGTERM
(what `make scale` and `make down` send) while clients keep calling must not
cost a single request: the instance stops consuming, the requests it holds
are answered or go back to the queue for the others (nameko acks late).
"""
import secrets
import threading

import pytest

from conftest import wait_until
from test_foundation import _rpc_count

INSTANCES = ("customers", "customers-2", "customers-3")


@pytest.fixture
def three_customers(system):
    for instance in INSTANCES[1:]:
        system.start("customers", instance=instance)
    try:
        yield
    finally:
        for instance in INSTANCES[1:]:
            if instance in system.processes:
                system.stop(instance)


@pytest.fixture
def customer_id(admin):
    created = admin.post("/customers", json={"kind": "company",
                                             "name": f"Scaling Test {secrets.token_hex(3)} Ltd"})
    assert created.status_code == 201, created.text
    return created.json()["id"]


def _counts(system, instances):
    return {instance: _rpc_count(system, instance, "get_customer") for instance in instances}


def test_requests_are_spread_over_every_instance(system, admin, three_customers, customer_id):
    before = _counts(system, INSTANCES)

    def all_served():
        for _ in range(15):
            response = admin.get(f"/customers/{customer_id}")
            assert response.status_code == 200, response.text
        now = _counts(system, INSTANCES)
        return all(now[instance] > before[instance] for instance in INSTANCES)

    wait_until(all_served, 30, interval=0, message="all three instances to serve get_customer")


class Stream:
    """Client threads calling the gateway back to back, recording every answer."""

    def __init__(self, admin, path, threads=6):
        self.admin, self.path = admin, path
        self.statuses = []
        self.failures = []  # (status or exception, body), for the assertion message
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        while not self.stopping.is_set():
            try:
                response = self.admin.get(self.path, timeout=15)
                outcome, body = response.status_code, response.text[:200]
            except Exception as error:  # a dropped connection is a lost request too
                outcome, body = repr(error), ""
            with self.lock:
                self.statuses.append(outcome)
                if not (isinstance(outcome, int) and 200 <= outcome < 300):
                    self.failures.append((outcome, body))

    def count(self):
        with self.lock:
            return len(self.statuses)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in self.threads), "a client thread hung"


def test_stopping_one_instance_under_load_loses_no_request(system, admin, three_customers, customer_id):
    leaving, staying = "customers-3", ("customers", "customers-2")
    process = system.processes[leaving]
    with Stream(admin, f"/customers/{customer_id}") as stream:
        # The leaving instance is busy serving the stream when it gets SIGTERM.
        served_by_leaving = _counts(system, [leaving])[leaving]
        wait_until(lambda: _counts(system, [leaving])[leaving] > served_by_leaving + 20, 30,
                   message=f"{leaving} to serve the stream")
        before_stop = _counts(system, staying)
        log_file = system.workdir / f"{leaving}.log"
        system.stop(leaving)  # SIGTERM, then waits for the process to exit
        answered_at_stop = stream.count()
        # The stream goes on against the two that stay.
        wait_until(lambda: stream.count() > answered_at_stop + 100, 30,
                   message="100 more answers after the stop")

    assert stream.count() > 100
    assert not stream.failures, (
        f"{len(stream.failures)} of {stream.count()} requests failed: {stream.failures[:5]}")
    # A graceful exit (status 0), not a SIGKILL; and the requests in hand were
    # finished, not cut off by the service's own shutdown deadline (how long the
    # stop took is no functional matter: a loaded machine is slower).
    assert process.returncode == 0, process.returncode
    assert "killing the service" not in log_file.read_text(errors="replace")
    after = _counts(system, staying)
    assert all(after[instance] > before_stop[instance] for instance in staying), (before_stop, after)
