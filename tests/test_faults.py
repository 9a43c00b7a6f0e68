"""Faults that must lose nothing (issue 10): the broker restarted, an instance
killed with SIGKILL, the database's connections cut, and a burst the gateway
cannot serve, each while clients keep writing through the gateway.

The destructive tests run on a system of their own (module scope), so the
session's shared ``system`` never sees them. RabbitMQ and PostgreSQL are
machine-wide servers other suites use too: a broker that was stopped is
started again, and waited for, in a ``finally``; the database is never
restarted, only this system's own connections are terminated (see
test_services_recover_their_database_connections).
"""
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
import requests

from api_helpers import PROBLEM
from conftest import ADMIN_EMAIL, ADMIN_PASSWORD, login, running_system, wait_until
from crm_common.testing_system import RABBIT_API, RabbitAdmin

RABBITMQCTL = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"


# --- the system these tests break ----------------------------------------------

@pytest.fixture(scope="class")
def faulty(tmp_path_factory):
    with running_system("faults", workdir=tmp_path_factory.mktemp("faults")) as running:
        yield running


@pytest.fixture(scope="class")
def boss(faulty):
    return login(faulty, ADMIN_EMAIL, ADMIN_PASSWORD)


@pytest.fixture(scope="class")
def goods(boss):
    """A product, and a customer that sales already knows: (product_id, customer_id)."""
    product = boss.post("/products", json={"sku": f"FLT-{secrets.token_hex(4)}", "name": "Fault widget",
                                           "unit": "piece", "list_price": "10.00", "currency": "CNY",
                                           "tax_rate": "0"})
    assert product.status_code == 201, product.text
    customer = boss.post("/customers", json={"kind": "company", "name": f"Fault Buyer {secrets.token_hex(3)}"})
    assert customer.status_code == 201, customer.text

    def draft():
        response = boss.post("/orders", json={"customer_id": customer.json()["id"],
                                              "lines": [{"product_id": product.json()["id"], "quantity": 1}]})
        return response if response.status_code == 201 else None
    wait_until(draft, 20, interval=0.2, message="sales to know the customer")
    return product.json()["id"], customer.json()["id"]


class Writers:
    """Client threads writing through the gateway back to back: a customer, then
    an order confirmed (order.placed). Records what was attempted, what was
    acknowledged (2xx) and every other outcome."""

    def __init__(self, api, goods, threads=4, orders=True):
        self.api, self.goods, self.with_orders = api, goods, orders
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.attempted = 0
        self.customers, self.orders, self.confirmed = [], [], []  # ids acknowledged with 2xx
        self.outcomes = []  # (monotonic time sent, answered, status or exception name, code from a problem body)
        self.pending = {}  # thread id -> when its current request was sent
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)

    def _call(self, method, path, **kwargs):
        sent = time.monotonic()
        with self.lock:
            self.attempted += 1
            self.pending[threading.get_ident()] = sent
        try:
            response = getattr(self.api, method)(path, timeout=20, **kwargs)
        except requests.RequestException as error:
            self._record(sent, type(error).__name__, None)
            return None
        finally:
            with self.lock:
                self.pending.pop(threading.get_ident(), None)
        code = None
        if response.headers.get("Content-Type", "").startswith(PROBLEM):
            code = response.json().get("code")
        self._record(sent, response.status_code, code)
        return response if 200 <= response.status_code < 300 else None

    def _record(self, sent, outcome, code):
        with self.lock:
            self.outcomes.append((sent, time.monotonic(), outcome, code))

    def _run(self):
        product_id, customer_id = self.goods
        while not self.stopping.is_set():
            created = self._call("post", "/customers", json={
                "kind": "company", "name": f"Fault Co {secrets.token_hex(4)}"})
            if created is not None:
                with self.lock:
                    self.customers.append(created.json()["id"])
            if not self.with_orders:
                continue
            order = self._call("post", "/orders", json={
                "customer_id": customer_id, "lines": [{"product_id": product_id, "quantity": 2}]})
            if order is not None:
                with self.lock:
                    self.orders.append(order.json()["id"])
                confirmed = self._call("post", f"/orders/{order.json()['id']}/confirm")
                if confirmed is not None:
                    with self.lock:
                        self.confirmed.append(confirmed.json()["id"])

    def acknowledged(self):
        with self.lock:
            return len(self.customers) + len(self.orders) + len(self.confirmed)

    def stuck(self, seconds):
        """How many requests have been waiting longer than ``seconds``."""
        now = time.monotonic()
        with self.lock:
            return sum(1 for sent in self.pending.values() if now - sent > seconds)

    def ok_since(self, moment):
        with self.lock:
            return sum(1 for _, at, outcome, _ in self.outcomes if at > moment and outcome in (200, 201))

    def ok_sent_since(self, moment):
        """How many requests sent after ``moment`` have succeeded."""
        with self.lock:
            return sum(1 for sent, _, outcome, _ in self.outcomes if sent > moment and outcome in (200, 201))

    def failures(self):
        with self.lock:
            return [(outcome, code) for _, _, outcome, code in self.outcomes if outcome not in (200, 201)]

    def summary(self):
        with self.lock:
            failures = {}
            for _, _, outcome, code in self.outcomes:
                if outcome not in (200, 201):
                    key = f"{outcome} {code or ''}".strip()
                    failures[key] = failures.get(key, 0) + 1
            return {"attempted": self.attempted, "customers_acked": len(self.customers),
                    "orders_acked": len(self.orders), "confirms_acked": len(self.confirmed), "failures": failures}


def assert_nothing_lost(api, writers):
    """Every acknowledged write exists, and the reports' totals equal the sources' (every event arrived)."""
    for customer_id in writers.customers:
        response = api.get(f"/customers/{customer_id}")
        assert response.status_code == 200, (customer_id, response.text)
    for order_id in writers.orders:
        response = api.get(f"/orders/{order_id}")
        assert response.status_code == 200, (order_id, response.text)
        if order_id in writers.confirmed:
            assert response.json()["status"] == "confirmed", response.json()

    def consistent():
        response = api.get("/reports/consistency")
        if response.status_code != 200:
            return None
        return response.json() if response.json()["consistent"] else None
    try:
        wait_until(consistent, 30, interval=0.5, message="the reports to agree with the sources")
    except AssertionError:
        raise AssertionError(f"reports disagree with the sources: {api.get('/reports/consistency').json()}")


def print_numbers(name, **numbers):
    # Shown with -s, and in the report of a failed test.
    print(f"\n[faults] {name}: " + ", ".join(f"{key}={value}" for key, value in numbers.items()))


# --- RabbitMQ restarted ------------------------------------------------------------

def _broker_answers():
    try:
        return requests.get(RabbitAdmin(RABBIT_API).base + "/overview", auth=RabbitAdmin(RABBIT_API).auth,
                            timeout=3).status_code == 200 and subprocess.run(
            [RABBITMQCTL, "-q", "await_startup"], capture_output=True, timeout=30).returncode == 0
    except (requests.RequestException, subprocess.TimeoutExpired):
        return False


# --- an instance killed with SIGKILL ---------------------------------------------

def _redelivered(system, instance):
    """How many RPC requests ``instance`` answered after RabbitMQ redelivered them, by its own count
    (crm_rpc_redelivered_total), not RabbitMQ's management statistics: those are sampled every
    few seconds and sometimes lag past any fair deadline."""
    samples = re.findall(r"^crm_rpc_redelivered_total\{[^}]*\} ([0-9.e+]+)$", system.metrics(instance), re.M)
    return sum(float(value) for value in samples)


def _connect(dsn):
    """A connection of the test's own; the shared server may briefly be at max_connections
    (other suites run beside this one), so a refusal is tried again for a while."""
    def attempt():
        try:
            return psycopg2.connect(dsn, connect_timeout=5)
        except psycopg2.OperationalError:
            return None
    return wait_until(attempt, 30, interval=0.5, message=f"a connection to {dsn.rsplit('/', 1)[1]}")


def _customers_db(system):
    return _connect(system.env["CRM_CUSTOMERS_DB_URL"].replace("+psycopg2", ""))


# --- PostgreSQL connections cut ------------------------------------------------------

def _terminate_backends(system):
    """Cut every connection of this system's services, as a database restart would.

    Not `pg_ctlcluster 15 main restart`: the server is shared machine-wide (other
    suites, a CI run) and a restart would break them; terminating only this
    system's backends is, for its services, the same event (every pooled
    connection dies under them), and harms nobody else.
    """
    prefix = system.env["CRM_CUSTOMERS_DB_URL"].rsplit("/", 1)[1].rsplit("_customers", 1)[0]
    admin = _connect(system.env["CRM_CUSTOMERS_DB_URL"].replace("+psycopg2", "").rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE datname LIKE %s AND pid <> pg_backend_pid()", (prefix + "%",))
            return cursor.fetchone()[0]
    finally:
        admin.close()


class TestFaultsUnderLoad:
    """The broker, an instance and the database fail under a running system of the class's own
    (torn down before the burst test starts its own: the shared PostgreSQL server has a
    connection limit that other suites need too)."""

    def test_a_broker_restart_loses_no_acknowledged_write_and_no_event(self, faulty, boss, goods):
        with Writers(boss, goods) as writers:
            wait_until(lambda: writers.acknowledged() >= 10, 30, message="writes before the restart")
            stopped_at = time.monotonic()
            try:
                subprocess.run([RABBITMQCTL, "-q", "stop_app"], check=True, capture_output=True, timeout=60)
                # Down long enough that writes are refused, not just delayed.
                wait_until(lambda: len(writers.failures()) >= 4, 20, message="writes to fail while the broker is down")
            finally:
                subprocess.run([RABBITMQCTL, "-q", "start_app"], capture_output=True, timeout=120)
                wait_until(_broker_answers, 120, interval=0.5, message="RabbitMQ to answer again")
            started_at = time.monotonic()
            # Nobody restarts the services: they reconnect by themselves.
            wait_until(lambda: writers.ok_since(started_at) >= 10, 45, interval=0.1,
                       message="writes to succeed again after the broker came back")
            recovered_after = time.monotonic() - started_at
        wait_until(faulty.ready, 30, interval=0.25, message="gateway /ready after the broker restart")
        print_numbers("broker restart", down_seconds=round(started_at - stopped_at, 1),
                      recovered_after_start_seconds=round(recovered_after, 1), **writers.summary())
        # While the broker was down the gateway answered cleanly: 503 problems, never a 500 or a hang.
        assert all(outcome == 503 for outcome, _ in writers.failures()), writers.summary()
        assert_nothing_lost(boss, writers)

    def test_an_instance_killed_mid_request_leaves_clean_answers_and_whole_records(self, faulty, boss, goods):
        faulty.start("customers", instance="customers-2")
        try:
            # customers-2 stays, the original instance is killed.
            victim = faulty.processes["customers"]
            with Writers(boss, goods, threads=8, orders=False) as writers:
                wait_until(lambda: writers.acknowledged() >= 20, 30, message="writes on two instances")
                # Freeze the victim so that requests RabbitMQ hands it stay in flight
                # (delivered, unacknowledged), then kill it: the kill is mid-request for certain.
                os.kill(victim.pid, signal.SIGSTOP)
                frozen_at = time.monotonic()
                try:
                    # RabbitMQ hands the requests to the two instances in turn: once the survivor has
                    # answered two requests sent after the freeze, the frozen one was handed at least
                    # the one between them. (A request's age proves nothing: on a busy machine an
                    # answer from the survivor can take half a second too.)
                    wait_until(lambda: writers.ok_sent_since(frozen_at) >= 2, 10, interval=0.02,
                               message="the survivor to answer two requests sent after the freeze")
                    pending_at_kill = writers.stuck(0)
                finally:
                    victim.kill()  # SIGKILL
                    victim.wait(10)
                    faulty.processes.pop("customers")
                killed_at = time.monotonic()
                wait_until(lambda: writers.ok_since(killed_at) >= 20, 30, interval=0.1,
                           message="writes to go on with the surviving instance")
            # The requests the killed instance held were not lost with it: RabbitMQ handed them to
            # the survivor, which answered them (they were held for well under their 3 s expiry).
            try:
                wait_until(lambda: _redelivered(faulty, "customers-2") >= 1, 15, interval=0.2,
                           message="customers-2 to answer the requests the killed instance held")
            finally:
                print_numbers("SIGKILL", pending_at_kill=pending_at_kill,
                              redelivered=_redelivered(faulty, "customers-2"), **writers.summary())
            # A clean answer or a clean error: 2xx, or a 503 problem (an RPC timed out); no 500, no dropped connection.
            assert all(outcome == 503 for outcome, _ in writers.failures()), writers.summary()
            assert_nothing_lost(boss, writers)
            # No half-written record: every customer row has its customer.created event, and no event lacks its row.
            with _customers_db(faulty) as connection, connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM customers")
                rows = cursor.fetchone()[0]
                cursor.execute("SELECT count(*) FROM crm_outbox WHERE event_type = 'customer.created'")
                events = cursor.fetchone()[0]
            assert rows == events, (rows, events)
        finally:
            if "customers" not in faulty.processes:
                faulty.start("customers")
            faulty.stop("customers-2")
        wait_until(faulty.ready, 30, interval=0.25, message="gateway /ready after the kill")

    def test_services_recover_their_database_connections(self, faulty, boss, goods):
        with Writers(boss, goods) as writers:
            wait_until(lambda: writers.acknowledged() >= 10, 30, message="writes before the cut")
            terminated = []
            for _ in range(2):  # twice: connections opened after the first cut die too
                terminated.append(_terminate_backends(faulty))
                cut_at = time.monotonic()
                wait_until(lambda: writers.ok_since(cut_at) >= 10, 30, interval=0.1,
                           message="writes to succeed again after the connections were cut")
            recovered_after = time.monotonic() - cut_at
        print_numbers("database connections cut", terminated=terminated,
                      recovered_after_seconds=round(recovered_after, 1), **writers.summary())
        assert all(count > 0 for count in terminated)
        # Transient failures are clean 503s (a lost connection mid-transaction), never a 500.
        assert all(outcome == 503 for outcome, _ in writers.failures()), writers.summary()
        assert_nothing_lost(boss, writers)
        wait_until(faulty.ready, 30, interval=0.25, message="gateway /ready after the cut")


# --- a burst the gateway cannot serve ---------------------------------------------------

GATEWAY_WORKERS, GATEWAY_QUEUE = 4, 4


@pytest.fixture(scope="module")
def cramped(tmp_path_factory):
    """A system whose gateway has 4 workers and room for 4 waiting requests."""
    with running_system("shed", workdir=tmp_path_factory.mktemp("shed"), extra_env={
            "CRM_GATEWAY_MAX_WORKERS": str(GATEWAY_WORKERS), "CRM_GATEWAY_MAX_QUEUED": str(GATEWAY_QUEUE)}) as running:
        yield running


def test_the_gateway_sheds_a_burst_at_once_and_recovers(cramped):
    api = login(cramped, ADMIN_EMAIL, ADMIN_PASSWORD)
    created = api.post("/customers", json={"kind": "company", "name": f"Shed Co {secrets.token_hex(3)}"})
    assert created.status_code == 201, created.text
    path = f"/customers/{created.json()['id']}"
    customers = cramped.processes["customers"]
    burst = 60

    def call(_):
        # One session per request: a burst of distinct clients, each on its own connection.
        client = requests.Session()
        client.headers.update(api.http.headers)
        started = time.monotonic()
        try:
            response = client.get(api.base + path, timeout=30)
            code = response.json().get("code") if response.headers.get(
                "Content-Type", "").startswith(PROBLEM) else None
            return response.status_code, code, response.headers.get("Retry-After"), time.monotonic() - started
        finally:
            client.close()

    # A stalled backend: every request holds a gateway worker until its RPC times out (3 s).
    os.kill(customers.pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(burst) as pool:
            results = list(pool.map(call, range(burst)))
    finally:
        os.kill(customers.pid, signal.SIGCONT)
    shed = [r for r in results if r[1] == "overloaded"]
    print_numbers("burst", requests=burst, shed=len(shed),
                  slowest_shed_seconds=round(max((r[3] for r in shed), default=0), 2),
                  others=sorted({(r[0], r[1]) for r in results if r[1] != "overloaded"}),
                  slowest_seconds=round(max(r[3] for r in results), 2))
    # At most workers + queue requests are admitted; every other one is refused at once.
    assert len(shed) >= burst - GATEWAY_WORKERS - GATEWAY_QUEUE, results
    assert all(r[0] == 503 and r[2] and r[3] < 1.0 for r in shed), shed
    # No 5xx but 503 (shed, or an RPC that timed out against the stalled service).
    assert all(r[0] < 500 or r[0] == 503 for r in results), results
    metrics = requests.get(cramped.gateway_url + "/metrics", timeout=5).text
    assert "crm_http_shed_total" in metrics

    # The burst over, the gateway serves normally again.
    def serves():
        return all(api.get(path).status_code == 200 for _ in range(10))
    wait_until(serves, 20, interval=0.2, message="normal requests to succeed after the burst")
