"""An HTTP load driver: N connections, each sending its next request as soon as the previous
answer arrived (closed loop), or requests at a fixed rate (open loop), for a fixed time.
Prints one JSON object with the figures.

    loadtests/.venv/bin/python loadtests/bench/driver.py < scenario.json

It runs in loadtests/.venv (gevent + geventhttpclient, which locust ships), never in the
services' eventlet venv; run_bench.py starts it as a subprocess for every scenario, the
floor included, so every figure comes from the same tool with the same connections.

Closed loop by default; with "rate" (requests/s) an open loop instead: a request is due
every 1/rate seconds whatever the answers do, each timed from when it was due, on a pool
of up to "connections" keep-alive connections.

The scenario (JSON on stdin):
    {"base_url": "http://127.0.0.1:8000", "method": "GET",
     "sessions": [                                  # connection i is sessions[i % len(sessions)]'s
        {"headers": {"Authorization": "Bearer ..."},  # one user's token: each connection a person
         "paths": ["/api/v1/customers/<id>", ...],    # taken in turn by the session's connections
         "bodies": ["{\\"name\\": \\"Bench {n}\\"}"]},  # optional, in turn; {n}: a number unique in
        ...],                                         # the run ({n8}: the same, 8 digits)
                                                      # or "requests": [[method, path, body], ...]
     "ok_statuses": [200], "connections": 32, "warmup_seconds": 5, "seconds": 20,
     "timeout_seconds": 10, "rate": null, "unique_start": 0}

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
    """What one person sends, in turn: ``requests`` ([method, path, body or null] each), or
    ``paths`` (and ``bodies``) with the scenario's method; and their headers."""

    def __init__(self, session, base_path, method):
        self.headers = session.get("headers", {})
        if "requests" in session:
            self.requests = [(m, base_path + path, body) for m, path, body in session["requests"]]
        else:
            bodies = session.get("bodies") or [None]
            paths = session["paths"]
            self.requests = [(method, base_path + paths[n % len(paths)], bodies[n % len(bodies)])
                             for n in range(max(len(paths), len(bodies)))]
        self.turn = itertools.count()

    def next_request(self, unique):
        method, path, body = self.requests[next(self.turn) % len(self.requests)]
        if body is not None:
            body = body.replace("{n8}", f"{unique % 10**8:08d}").replace("{n}", str(unique))
        return method, path, body


class Run:
    """What every connection of one scenario shares: what to send and what came back."""

    def __init__(self, scenario):
        base_path = urlparse(scenario["base_url"]).path.rstrip("/")
        method = scenario.get("method", "GET")
        self.sessions = [Session(session, base_path, method) for session in scenario["sessions"]]
        self.ok_statuses = set(scenario.get("ok_statuses", [200]))
        # {n} in bodies: unique across the runs of one bench too ("unique_start").
        self.unique = itertools.count(scenario.get("unique_start", 0))
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


def send(run, session, client):
    """One request of ``session`` on ``client``: its outcome (status, or the error's name)."""
    method, path, body = session.next_request(next(run.unique))
    try:
        response = client.request(method, path, body=body, headers=session.headers)
        response.read()
        return response.status_code
    except Exception as error:  # a failed request is a figure, not a crash of the driver
        return "Timeout" if isinstance(error, (socket.timeout, gevent.Timeout)) else type(error).__name__


def connection(run, session, client, window_starts, window_ends):
    """One closed loop over one keep-alive connection until the window ends; the request in
    flight then is waited for (or times out) and counted."""
    while True:
        started = time.monotonic()
        if started >= window_ends:
            return
        outcome = send(run, session, client)
        finished = time.monotonic()
        run.record(started >= window_starts, (finished - started) * 1000, outcome, late=finished > window_ends)


def arrivals(run, client, rate, window_starts, window_ends):
    """Open loop: a request every 1/rate seconds whatever the answers do, each timed from when it
    was due, so waiting for a free connection counts (no coordinated omission)."""
    interval = 1.0 / rate
    due = time.monotonic()
    n = 0
    pending = []

    def one(session, due):
        outcome = send(run, session, client)
        finished = time.monotonic()
        run.record(due >= window_starts, (finished - due) * 1000, outcome, late=finished > window_ends)

    while due < window_ends:
        gevent.sleep(max(0.0, due - time.monotonic()))
        pending.append(gevent.spawn(one, run.sessions[n % len(run.sessions)], due))
        n += 1
        due += interval
    gevent.joinall(pending)


def drive(scenario):
    run = Run(scenario)
    url = urlparse(scenario["base_url"])
    timeout = scenario.get("timeout_seconds", REQUEST_TIMEOUT_SECONDS)
    connections = scenario.get("connections", 32)
    now = time.monotonic()
    window_starts = now + scenario.get("warmup_seconds", 5)
    window_ends = window_starts + scenario.get("seconds", 20)
    if scenario.get("rate"):
        # One pool of keep-alive connections, as many as may be in flight at once.
        clients = [HTTPClient(url.hostname, url.port, concurrency=connections, connection_timeout=timeout,
                              network_timeout=timeout)]
        arrivals(run, clients[0], scenario["rate"], window_starts, window_ends)
    else:
        clients = [HTTPClient(url.hostname, url.port, concurrency=1, connection_timeout=timeout,
                              network_timeout=timeout) for _ in range(connections)]
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
