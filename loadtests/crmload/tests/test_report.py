from crmload.report import render_markdown, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_run(passed):
    timeline = [{"t": 1000 + 5 * i, "users": min(10 * (i // 4 + 1), 30), "rps": 8.0 * (i // 4 + 1),
                 "failures_per_s": 0.5 if i > 8 else 0.0, "p50": 40 if i != 5 else None, "p95": 120 + 40 * i, "p99": 300 + 60 * i}
                for i in range(12)]
    resources = [{"t": 1000 + 5 * i, "service": service, "rss_bytes": (100 + i) * 2**20, "cpu_seconds": 0.4 * i}
                 for i in range(12) for service in ("gateway", "customers")]
    reads = {"group": "reads", "requests": 480, "p95_ms": 250 if passed else 560, "p99_ms": 700,
             "error_ratio": 0.002, "status": "pass" if passed else "FAIL",
             "misses": [] if passed else ["p95 560 ms > 300 ms"],
             "objective": {"p95_ms": 300, "p99_ms": 800, "max_error_ratio": 0.01}}
    return {
        "shape": "StressShape", "host": "http://127.0.0.1:8000", "started_at": 1000, "ended_at": 1060,
        "passed": passed, "findings": [] if passed else ["SLO missed by reads: p95 560 ms > 300 ms"],
        "verdict": {"passed": passed, "groups": [reads]}, "timeline": timeline, "resources": resources,
        "user_exceptions": 0,
        "stress": {"steps": [{"users": 10, "seconds": 40, "requests_per_second": 8.1, "passed": True, "misses": []},
                             {"users": 20, "seconds": 40, "requests_per_second": 15.9, "passed": False,
                              "misses": ["reads: p95 560 ms > 300 ms"]}],
                   "knee": {"users": 10, "seconds": 40, "requests_per_second": 8.1, "passed": True, "misses": []}},
    }


def test_the_report_opens_with_the_verdict_and_links_its_charts(tmp_path):
    report = write_report(tmp_path, synthetic_run(passed=False))
    text = report.read_text()
    assert text.startswith("# Load test: ❌ FAIL")
    assert "- SLO missed by reads: p95 560 ms > 300 ms" in text
    assert "| reads | 480 | 560 (300) | 700 (800) | 0.20% (1.00%) | **FAIL** |" in text
    assert "**Knee: 8.1 requests/s at 10 users**" in text
    for chart in ("throughput.png", "latency.png", "errors.png", "resources.png"):
        assert f"]({chart})" in text
        assert (tmp_path / chart).read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / "run.json").exists()


def test_a_run_that_held_says_so_first():
    assert render_markdown(synthetic_run(passed=True)).startswith(
        "# Load test: ✅ PASS\n\n**The system held: every check of this run passed.**")


def test_a_run_without_metrics_samples_still_gets_its_charts(tmp_path):
    run = synthetic_run(passed=True) | {"resources": [], "stress": None}
    write_report(tmp_path, run)
    assert (tmp_path / "resources.png").read_bytes().startswith(PNG_MAGIC)
