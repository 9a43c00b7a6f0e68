"""A closed-loop HTTP load driver: N connections, each sending its next request as soon as
the previous answer arrived, for a fixed time. Prints one JSON object with the figures.

    loadtests/.venv/bin/python loadtests/bench/driver.py < scenario.json

It runs in loadtests/.venv (gevent + geventhttpclient, which locust ships), never in the
services' eventlet venv; run_bench.py starts it as a subprocess for every scenario, the
floor included, so every figure comes from the same tool with the same connections.

The scenario (JSON on stdin):
    {"base_url": "http://127.0.0.1:8000", "method": "GET",
     "paths": ["/api/v1/customers/<id>", ...],   # taken in turn, shared by all connections
     "headers": {"Authorization": "Bearer ..."},
     "body": "{\\"name\\": \\"Bench {n}\\"}",      # optional; {n} becomes a number unique in the run
     "ok_statuses": [200], "connections": 32, "warmup_seconds": 5, "seconds": 20}

The answer: {"rps", "p50_ms", "p95_ms", "p99_ms", "requests", "errors", "error_samples",
"succeeded_total"}. Only answers that arrive in the timed window (after the warm-up) count
towards rps, percentiles and errors; succeeded_total also counts the warm-up's (a create
scenario compares it with what the system recorded). A request that raised (timeout, reset)
counts as an error with its exception name.
"""
from gevent import monkey

monkey.patch_all()

import itertools  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlparse  # noqa: E402

import gevent  # noqa: E402
from geventhttpclient import HTTPClient  # noqa: E402

REQUEST_TIMEOUT_SECONDS = 30


def percentile(values, fraction):
    """Nearest-rank percentile of ``values`` (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class Run:
    """What every connection of one scenario shares: the request to send and what came back."""

    def __init__(self, scenario):
        self.scenario = scenario
        self.method = scenario.get("method", "GET")
        self.paths = [urlparse(scenario["base_url"]).path.rstrip("/") + path for path in scenario["paths"]]
        self.headers = scenario.get("headers", {})
        self.body = scenario.get("body")
        self.ok_statuses = set(scenario.get("ok_statuses", [200]))
        self.sequence = itertools.count()
        self.latencies_ms = []
        self.errors = 0
        self.error_samples = {}
        self.succeeded_total = 0

    def next_request(self):
        n = next(self.sequence)
        body = self.body.replace("{n}", str(n)) if self.body is not None else None
        return self.paths[n % len(self.paths)], body

    def record(self, in_window, elapsed_ms, outcome):
        ok = outcome in self.ok_statuses
        self.succeeded_total += ok
        if not in_window:
            return
        self.latencies_ms.append(elapsed_ms)
        if not ok:
            self.errors += 1
            self.error_samples[str(outcome)] = self.error_samples.get(str(outcome), 0) + 1


def connection(run, client, window_starts, window_ends):
    """One closed loop over one keep-alive connection until the window ends."""
    while True:
        path, body = run.next_request()
        started = time.monotonic()
        if started >= window_ends:
            return
        try:
            response = client.request(run.method, path, body=body, headers=run.headers)
            response.read()
            outcome = response.status_code
        except Exception as error:  # a failed request is a figure, not a crash of the driver
            outcome = type(error).__name__
        finished = time.monotonic()
        if finished <= window_ends:
            run.record(started >= window_starts, (finished - started) * 1000, outcome)


def drive(scenario):
    run = Run(scenario)
    url = urlparse(scenario["base_url"])
    clients = [HTTPClient(url.hostname, url.port, concurrency=1, connection_timeout=REQUEST_TIMEOUT_SECONDS,
                          network_timeout=REQUEST_TIMEOUT_SECONDS)
               for _ in range(scenario.get("connections", 32))]
    now = time.monotonic()
    window_starts = now + scenario.get("warmup_seconds", 5)
    window_ends = window_starts + scenario.get("seconds", 20)
    gevent.joinall([gevent.spawn(connection, run, client, window_starts, window_ends) for client in clients])
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
        "succeeded_total": run.succeeded_total,
    }


if __name__ == "__main__":
    json.dump(drive(json.load(sys.stdin)), sys.stdout)
    sys.stdout.write("\n")
