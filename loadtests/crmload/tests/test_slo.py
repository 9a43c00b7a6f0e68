from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from crmload.slo import SloConfig, Tally, evaluate, format_verdict, group_tallies, snapshot, window

CONFIG = SloConfig.from_dict({
    "min_requests": 10,
    "group": [
        {"name": "auth", "patterns": ["* /api/v1/auth/*"], "p95_ms": 1500, "p99_ms": 3000,
         "max_error_ratio": 0.01},
        {"name": "reads", "patterns": ["GET *"], "p95_ms": 300, "p99_ms": 800, "max_error_ratio": 0.01},
        {"name": "writes", "patterns": ["POST *", "PATCH *"], "p95_ms": 500, "p99_ms": 1500,
         "max_error_ratio": 0.01},
    ],
})


def tally(response_times: dict[int, int], failures: int = 0) -> Tally:
    return Tally(sum(response_times.values()), failures, Counter(response_times))


def test_a_groups_percentiles_come_from_its_merged_histograms_not_averaged_percentiles():
    tallies = {
        ("GET", "/api/v1/customers"): tally({10: 1000}),  # fast and busy
        ("GET", "/api/v1/customers/{id}"): tally({900: 100}),  # slow and rare: 9% of the reads
    }
    reads = group_tallies(tallies, CONFIG)["reads"]
    assert reads.requests == 1100
    # Averaging the two endpoints' p95 (10 and 900) would say 455 ms and pass.
    assert reads.percentile(0.95) == 900
    assert reads.percentile(0.50) == 10


def test_a_run_that_meets_every_objective_passes():
    verdict = evaluate({("GET", "/api/v1/customers"): tally({50: 95, 200: 5}),
                        ("POST", "/api/v1/customers"): tally({120: 50})}, CONFIG)
    assert verdict.passed
    assert [(r.group, r.status) for r in verdict.results] == [("reads", "pass"), ("writes", "pass")]


def test_a_miss_names_the_group_and_the_percentile_or_error_ratio_it_missed():
    verdict = evaluate({
        ("GET", "/api/v1/customers/{id}"): tally({100: 90, 2000: 10}),  # p95 and p99 at 2 s
        ("POST", "/api/v1/customers"): tally({100: 100}, failures=5),  # 5% errors
    }, CONFIG)
    assert not verdict.passed
    assert verdict.misses == ["reads: p95 2000 ms > 300 ms", "reads: p99 2000 ms > 800 ms",
                              "writes: errors 5.00% > 1.00%"]
    table = format_verdict(verdict.to_dict())
    assert "FAIL" in table and "reads" in table


def test_a_group_with_too_few_requests_is_shown_but_not_judged():
    verdict = evaluate({("GET", "/api/v1/customers"): tally({5000: 3})}, CONFIG)
    assert verdict.passed
    assert verdict.results[0].status == "no data"


def test_the_first_matching_group_wins():
    groups = group_tallies({("POST", "/api/v1/auth/login"): tally({900: 10})}, CONFIG)
    assert list(groups) == ["auth"]


def test_a_window_is_the_traffic_between_two_snapshots():
    def stats(requests, failures, response_times):
        entry = SimpleNamespace(method="GET", name="/x", num_requests=requests, num_failures=failures,
                                response_times=response_times)
        return SimpleNamespace(entries={("/x", "GET"): entry})

    before = snapshot(stats(10, 1, {10: 10}))
    after = snapshot(stats(25, 3, {10: 12, 500: 13}))
    traffic = window(before, after)[("GET", "/x")]
    assert (traffic.requests, traffic.failures) == (15, 2)
    assert traffic.response_times == Counter({10: 2, 500: 13})


@pytest.mark.parametrize("request_label, group", [
    ("GET /api/v1/customers/{id}", "reads"),
    ("GET /api/v1/customers", "reads"),
    ("GET /api/v1/customers?q={term}", "searches"),
    ("GET /api/v1/customers (API key)", "reads"),
    ("GET /api/v1/exports/customers", "reports"),
    ("POST /api/v1/imports/customers", "reports"),
    ("POST /api/v1/tasks/{id}/complete", "writes"),
    ("POST /api/v1/customers", "writes"),
    ("PATCH /api/v1/opportunities/{id}", "writes"),
    ("POST /api/v1/auth/login", "auth"),
    ("GET /api/v1/reports/pipeline", "reports"),
    ("AMQP customers.get_customer", "amqp"),
])
def test_the_shipped_slo_file_puts_requests_in_the_expected_groups(request_label, group):
    config = SloConfig.load(Path(__file__).resolve().parents[2] / "slo.toml")
    method, name = request_label.split(" ", 1)
    assert config.objective_for(method, name).group == group
