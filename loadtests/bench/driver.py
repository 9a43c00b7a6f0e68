"""A closed-loop HTTP load driver: N connections, each sending its next request as soon as
the previous answer arrived, for a fixed time. Prints one JSON object with the figures.

    loadtests/.venv/bin/python loadtests/bench/driver.py < scenario.json

It runs in loadtests/.venv (gevent + geventhttpclient, which locust ships), never in the
services' eventlet venv; run_bench.py starts it as a subprocess for every scenario, the
floor included, so every figure comes from the same tool with the same connections.

The scenario (JSON on stdin):
    {"base_url": "http://127.0.0.1:8000", "method": "GET",
     "sessions": [                                  # connection i is sessions[i % len(sessions)]'s
        {"headers": {"Authorization": "Bearer ..."},  # one user's token: each connection a person
         "paths": ["/api/v1/customers/<id>", ...],    # taken in turn by the session's connections
         "bodies": ["{\\"name\\": \\"Bench {n}\\"}"]},  # optional, in turn; {n}: a number unique in
        ...],                                         # the run ({n8}: the same, 8 digits)
     "ok_statuses": [200], "connections": 32, "warmup_seconds": 5, "seconds": 20,
     "timeout_seconds": 10}

The answer: {"rps", "p50_ms", "p95_ms", "p99_ms", "requests", "errors", "error_samples",
"late", "succeeded_total"}. Every request started in the timed window (after the warm-up)
counts, whenever it ends: one that ends after the window with its real latency ("late"
counts those), one that gets no answer within timeout_seconds as an error ("Timeout"),
like one that raised (reset, refused) with its exception name. rps is the successful
requests started in the window per second of the window. succeeded_total also counts the
warm-up's and the late ones (a create scenario compares it with what the system recorded).

"""
from gevent import monkey

monkey.patch_all()

import itertools  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlparse  # noqa: E402

import gevent  # noqa: E402
from geventhttpclient import HTTPClient  # noqa: E402

# A request with no answer after this long is an error; shorter than any window, so a hung
# request is counted, not waited out.
REQUEST_TIMEOUT_SECONDS = 10


def percentile(values, fraction):
    """Nearest-rank percentile of ``values`` (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class Session:
    """What the connections of one user send: its headers, and its paths and bodies in turn."""

    def __init__(self, session, base_path):
        self.headers = session.get("headers", {})
        self.paths = [base_path + path for path in session["paths"]]
        self.bodies = session.get("bodies")
        self.turn = itertools.count()

    def next_request(self, unique):
        n = next(self.turn)
        body = None
        if self.bodies:
            body = self.bodies[n % len(self.bodies)].replace("{n8}", f"{unique % 10**8:08d}")
            body = body.replace("{n}", str(unique))
        return self.paths[n % len(self.paths)], body


class Run:
    """What every connection of one scenario shares: what to send and what came back."""

    def __init__(self, scenario):
        base_path = urlparse(scenario["base_url"]).path.rstrip("/")
        self.method = scenario.get("method", "GET")
        self.sessions = [Session(session, base_path) for session in scenario["sessions"]]
        self.ok_statuses = set(scenario.get("ok_statuses", [200]))
        self.unique = itertools.count()
        self.latencies_ms = []
        self.errors = 0
        self.late = 0
        self.error_samples = {}
        self.succeeded_total = 0

    def record(self, in_window, elapsed_ms, outcome, late):
        ok = outcome in self.ok_statuses
        self.succeeded_total += ok
        if not in_window:
            return
        self.latencies_ms.append(elapsed_ms)
        self.late += late
        if not ok:
            self.errors += 1
            self.error_samples[str(outcome)] = self.error_samples.get(str(outcome), 0) + 1


def connection(run, session, client, window_starts, window_ends):
    """One closed loop over one keep-alive connection until the window ends; the request in
    flight then is waited for (or times out) and counted."""
    while True:
        started = time.monotonic()
        if started >= window_ends:
            return
        path, body = session.next_request(next(run.unique))
        try:
            response = client.request(run.method, path, body=body, headers=session.headers)
            response.read()
            outcome = response.status_code
        except Exception as error:  # a failed request is a figure, not a crash of the driver
            outcome = "Timeout" if isinstance(error, (socket.timeout, gevent.Timeout)) else type(error).__name__
        finished = time.monotonic()
        run.record(started >= window_starts, (finished - started) * 1000, outcome, late=finished > window_ends)


def drive(scenario):
    run = Run(scenario)
    url = urlparse(scenario["base_url"])
    timeout = scenario.get("timeout_seconds", REQUEST_TIMEOUT_SECONDS)
    connections = scenario.get("connections", 32)
    clients = [HTTPClient(url.hostname, url.port, concurrency=1, connection_timeout=timeout,
                          network_timeout=timeout) for _ in range(connections)]
    now = time.monotonic()
    window_starts = now + scenario.get("warmup_seconds", 5)
    window_ends = window_starts + scenario.get("seconds", 20)
    gevent.joinall([gevent.spawn(connection, run, run.sessions[i % len(run.sessions)], client,
                                 window_starts, window_ends)
                    for i, client in enumerate(clients)])
    for client in clients:
        client.close()
    measured_seconds = window_ends - window_starts
    return {
        "rps": (len(run.latencies_ms) - run.errors) / measured_seconds,
        "p50_ms": percentile(run.latencies_ms, 0.50),
        "p95_ms": percentile(run.latencies_ms, 0.95),
        "p99_ms": percentile(run.latencies_ms, 0.99),
        "requests": len(run.latencies_ms),
        "errors": run.errors,
        "error_samples": run.error_samples,
        "late": run.late,
        "succeeded_total": run.succeeded_total,
    }


if __name__ == "__main__":
    json.dump(drive(json.load(sys.stdin)), sys.stdout)
    sys.stdout.write("\n")
