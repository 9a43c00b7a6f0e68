"""The bench's load driver (loadtests/bench/driver.py) counts what a client sees: every request
started in the window, a late answer with its real latency, no answer as an error."""
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

DRIVER = Path(__file__).resolve().parents[2] / "bench" / "driver.py"
# How long each path takes to answer, in seconds.
DELAYS = {"/fast": 0.0, "/slow": 1.5, "/hang": 30.0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        time.sleep(DELAYS[self.path.split("?")[0]])  # the server under test is slow on purpose
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def drive(base_url, paths, seconds=1.0, timeout=3.0):
    scenario = {"base_url": base_url, "sessions": [{"paths": paths}], "connections": 1,
                "warmup_seconds": 0, "seconds": seconds, "timeout_seconds": timeout}
    answer = subprocess.run([sys.executable, str(DRIVER)], input=json.dumps(scenario), capture_output=True,
                            text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


def test_an_answer_after_the_window_counts_with_its_real_latency(server):
    figures = drive(server, ["/slow"])
    # Started inside the 1 s window, answered 1.5 s later: one request, late, 1.5 s long.
    assert (figures["requests"], figures["late"], figures["errors"]) == (1, 1, 0)
    assert figures["p95_ms"] >= 1500


def test_a_request_with_no_answer_is_a_timeout_error(server):
    figures = drive(server, ["/hang"], timeout=2.0)
    assert (figures["requests"], figures["errors"]) == (1, 1)
    assert figures["error_samples"] == {"Timeout": 1}
    assert figures["rps"] == 0


def test_every_answer_in_the_window_is_counted_once(server):
    figures = drive(server, ["/fast", "/fast?page=2"], seconds=0.5)
    assert figures["errors"] == 0 and figures["requests"] > 2
    assert figures["succeeded_total"] == figures["requests"]


def test_an_open_loop_sends_at_its_rate_and_times_from_when_each_request_was_due(server):
    scenario = {"base_url": server, "sessions": [{"requests": [["GET", "/fast", None], ["GET", "/slow", None]]}],
                "connections": 1, "warmup_seconds": 0, "seconds": 2, "timeout_seconds": 5, "rate": 4}
    answer = subprocess.run([sys.executable, str(DRIVER)], input=json.dumps(scenario), capture_output=True,
                            text=True, timeout=60)
    figures = json.loads(answer.stdout)
    # 8 requests due in 2 s, whatever the answers do; one connection, so a fast request due behind a
    # slow one waits for it, and that wait is part of its latency.
    assert figures["requests"] == 8 and figures["errors"] == 0
    assert figures["p50_ms"] >= 1500
