"""Prometheus metrics shared by every service (one process serves one service).

Names follow ARCHITECTURE.md section 6. Labels never carry user ids, emails or
record ids: only service, method, route template, event type and outcome.
"""
import time

from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import event

# Buckets bracket the API latency targets: 10 ms ... 5 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0)

RPC_REQUESTS = Counter(
    "crm_rpc_requests_total", "RPC requests served", ["service", "method", "outcome"]
)
# A request the broker handed out again: the instance that had it died or lost its
# connection before acknowledging it. Counted once the new answer is sent, so a
# redelivered request that is dropped instead of served does not count.
RPC_REDELIVERED = Counter(
    "crm_rpc_redelivered_total", "RPC requests served after the broker redelivered them",
    ["service", "method"],
)
RPC_DURATION = Histogram(
    "crm_rpc_duration_seconds", "Time to serve an RPC request", ["service", "method"],
    buckets=LATENCY_BUCKETS,
)
EVENTS_PUBLISHED = Counter(
    "crm_events_published_total", "Events published from the outbox", ["service", "type"]
)
EVENTS_CONSUMED = Counter(
    "crm_events_consumed_total",
    "Events handled, by outcome: ok (including redelivered duplicates), retry, dead_letter",
    ["service", "type", "outcome"],
)
OUTBOX_PENDING = Gauge("crm_outbox_pending", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "crm_outbox_oldest_pending_age_seconds", "Age of the oldest unpublished outbox row", ["service"]
)
WORKERS_IN_USE = Gauge("crm_workers_in_use", "Workers currently running", ["service"])
WORKERS_MAX = Gauge("crm_workers_max", "Size of the worker pool", ["service"])
DB_QUERY_DURATION = Histogram(
    "crm_db_query_duration_seconds", "Time a database statement took, by kind (select, insert, update, delete, other)",
    ["service", "statement"], buckets=LATENCY_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "crm_http_requests_total", "HTTP requests served by the gateway", ["route", "method", "status"]
)
HTTP_SHED = Counter(
    "crm_http_shed_total",
    "API requests the gateway refused with 503 at once because too many were already waiting for a worker",
    ["route"],
)
HTTP_DURATION = Histogram(
    "crm_http_request_duration_seconds", "Time to serve an HTTP request", ["route"],
    buckets=LATENCY_BUCKETS,
)


def exposition():
    """The body and content type of a /metrics response."""
    return generate_latest(), CONTENT_TYPE_LATEST


class Metrics(DependencyProvider):
    """Times every worker; counts RPC requests by method and outcome."""

    def __init__(self):
        self.started = {}

    def setup(self):
        self.service_name = self.container.service_name
        WORKERS_MAX.labels(self.service_name).set(self.container.max_workers)

    def get_dependency(self, worker_ctx):
        return None

    def worker_setup(self, worker_ctx):
        self.started[worker_ctx] = time.perf_counter()
        WORKERS_IN_USE.labels(self.service_name).inc()

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self.started.pop(worker_ctx, None)
        WORKERS_IN_USE.labels(self.service_name).dec()
        if started is None or not isinstance(worker_ctx.entrypoint, Rpc):
            return
        method = worker_ctx.entrypoint.method_name
        outcome = "success" if exc_info is None else _outcome_of(exc_info[1])
        RPC_REQUESTS.labels(self.service_name, method, outcome).inc()
        RPC_DURATION.labels(self.service_name, method).observe(time.perf_counter() - started)


def _outcome_of(exc):
    # A refused request (bad input, not found, conflict) is the caller's
    # error, not the service's: SRE error ratios count only "error".
    status = getattr(exc, "status", 500)
    return "client_error" if 400 <= status < 500 else "error"


# --- business counters: counted when the transaction that made the fact commits ---

_PENDING = "crm_metrics_pending"


def count_after_commit(session, counter, amount=1):
    """Add ``amount`` to ``counter`` (a labelled child) once ``session``'s transaction commits.

    A fact written in a transaction that rolls back never happened, so it is
    not counted: increments made inside a savepoint that rolls back, or a
    transaction that rolls back or is closed without commit, are dropped.
    """
    call_after_commit(session, counter.inc, amount)


def call_after_commit(session, function, *args):
    """Call ``function(*args)`` once ``session``'s transaction commits, under the same
    rules as ``count_after_commit`` (dropped if that transaction or savepoint rolls
    back). For observations whose value is known only then, such as a lag up to
    the commit: pass a function that computes it when called.
    """
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _publish_pending)
        event.listen(session, "after_soft_rollback", _drop_rolled_back)
    if not session.in_transaction():
        session.begin()
    transaction = session.get_nested_transaction() or session.get_transaction()
    pending.append((function, args, transaction))


def _chain(transaction):
    while transaction is not None:
        yield transaction
        transaction = transaction.parent


def _publish_pending(session):
    if session.in_nested_transaction():
        return  # a savepoint released: its counts wait for the outer commit
    root = session.get_transaction()
    pending = session.info[_PENDING]
    for function, args, transaction in pending:
        if root in _chain(transaction):  # else left over from a transaction closed without commit
            function(*args)
    pending.clear()


def _drop_rolled_back(session, previous_transaction):
    pending = session.info[_PENDING]
    pending[:] = [item for item in pending if previous_transaction not in _chain(item[2])]


# --- database statement timing ------------------------------------------------------

_STATEMENT_KINDS = ("select", "insert", "update", "delete")
_STARTED = "crm_statement_started"


def time_statements(engine, service_name):
    """Observe every statement ``engine`` runs in crm_db_query_duration_seconds (kind only, never the SQL)."""
    @event.listens_for(engine, "before_cursor_execute")
    def _started(conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault(_STARTED, []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _finished(conn, cursor, statement, parameters, context, executemany):
        started = conn.info[_STARTED].pop()
        first_word = statement.lstrip().split(None, 1)[0].lower() if statement.strip() else ""
        kind = first_word if first_word in _STATEMENT_KINDS else "other"
        DB_QUERY_DURATION.labels(service_name, kind).observe(time.perf_counter() - started)

    @event.listens_for(engine, "handle_error")
    def _failed(context):
        # A failed statement never reaches after_cursor_execute: forget when it started.
        if context.connection is not None and context.connection.info.get(_STARTED):
            context.connection.info[_STARTED].pop()
