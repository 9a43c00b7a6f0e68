import pytest

from crmload.monitor import cpu_percent_series, memory_trends, parse_metrics_urls, parse_prometheus_text

MB = 2**20

METRICS = """\
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.2345678e+08
process_cpu_seconds_total 12.5
crm_rpc_requests_total{service="customers",method="get",outcome="ok"} 42.0
"""


def test_the_process_metrics_are_read_from_prometheus_text():
    values = parse_prometheus_text(METRICS)
    assert values["process_resident_memory_bytes"] == 123456780
    assert values["process_cpu_seconds_total"] == 12.5


def test_metrics_urls_are_named_by_service_or_by_host_and_port():
    assert parse_metrics_urls("gateway=http://h:8000/metrics, http://h:8101/metrics") == {
        "gateway": "http://h:8000/metrics", "h:8101": "http://h:8101/metrics"}


def samples(service, megabytes_at, seconds=600, every=10):
    return [{"t": t, "service": service, "rss_bytes": megabytes_at(t) * MB, "cpu_seconds": t / 10}
            for t in range(0, seconds + 1, every)]


def test_memory_that_keeps_climbing_after_warm_up_is_flagged():
    leaking = samples("sales", lambda t: 100 + t / 10)  # 130 MB after warm-up, +50% by the end
    steady = samples("customers", lambda t: 120 + (3 if t % 20 else -3))  # noise around a level
    trends = {t.service: t for t in memory_trends(leaking + steady, started_at=0, warmup_seconds=300)}
    assert trends["sales"].growing
    assert trends["sales"].growth_ratio == pytest.approx(30 / 130, rel=0.01)
    assert not trends["customers"].growing
    assert "sales: memory 130 MB -> 160 MB" in trends["sales"].describe()


def test_growth_during_warm_up_that_levels_off_is_not_flagged():
    filling_a_cache = samples("reporting", lambda t: 80 + min(t, 250) / 5)  # grows 50 MB, then flat
    [trend] = memory_trends(filling_a_cache, started_at=0, warmup_seconds=300)
    assert not trend.growing


def test_a_single_high_sample_near_the_end_is_not_a_trend():
    spike = samples("gateway", lambda t: 120 if t == 590 else 100)  # +20% in one sample
    [trend] = memory_trends(spike, started_at=0, warmup_seconds=300)
    assert not trend.growing


def test_too_few_samples_after_warm_up_give_no_trend():
    assert memory_trends(samples("sales", lambda t: t, seconds=320), started_at=0, warmup_seconds=300) == []


def test_cpu_percent_is_cpu_seconds_per_second():
    series = cpu_percent_series(samples("sales", lambda t: 100, seconds=20))
    assert series["sales"] == [(10, pytest.approx(10.0)), (20, pytest.approx(10.0))]
