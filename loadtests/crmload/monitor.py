"""The services' side of a load run: every few seconds, each service's
/metrics (Prometheus text format) gives its resident memory and CPU time.

The samples feed the report's CPU and memory charts and the soak gate, which
fails a run when a service's memory keeps growing after warm-up (a leak shows
as a steady climb; a cache filling up levels off during warm-up).
"""
from __future__ import annotations

import logging
import os
import time
import urllib.request
from dataclasses import dataclass

logger = logging.getLogger(__name__)

RSS = "process_resident_memory_bytes"
CPU = "process_cpu_seconds_total"

# The ports `make up` gives each service (scripts/lib.sh, crm_export_env);
# the same environment variables override them here as there.
_MAKE_UP_PORTS = {
    "gateway": ("CRM_GATEWAY_PORT", 8000),
    "customers": ("CRM_CUSTOMERS_HTTP_PORT", 8101),
    "sales": ("CRM_SALES_HTTP_PORT", 8102),
    "notifications": ("CRM_NOTIFICATIONS_HTTP_PORT", 8103),
    "reporting": ("CRM_REPORTING_HTTP_PORT", 8104),
}


def parse_metrics_urls(spec: str) -> dict[str, str]:
    """"name=url,name=url" (or bare URLs, named by host:port) -> {name: url}."""
    urls = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, url = item.partition("=")
        if not sep or "://" in name:
            url = item
            name = url.split("://", 1)[-1].split("/", 1)[0]
        urls[name] = url
    return urls


def default_metrics_urls() -> dict[str, str]:
    """LOADTEST_METRICS_URLS if set, else every service of `make up`."""
    if os.environ.get("LOADTEST_METRICS_URLS"):
        return parse_metrics_urls(os.environ["LOADTEST_METRICS_URLS"])
    return {service: f"http://127.0.0.1:{os.environ.get(var) or port}/metrics"
            for service, (var, port) in _MAKE_UP_PORTS.items()}


def parse_prometheus_text(text: str) -> dict[str, float]:
    """The unlabelled samples of a Prometheus text exposition: {name: value}.
    Process metrics carry no labels; labelled series are not needed here."""
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or "{" in line:
            continue
        parts = line.split()
        if len(parts) >= 2:
            try:
                values[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return values


class MetricsSampler:
    """Polls each service's /metrics every `interval` seconds in a greenlet
    (locust's gevent loop) and keeps the samples as plain dicts:
    {"t": unix time, "service": name, "rss_bytes": ..., "cpu_seconds": ...}."""

    def __init__(self, urls: dict[str, str], interval: float = 5.0):
        self.urls = urls
        self.interval = interval
        self.samples: list[dict] = []
        self.unreachable: dict[str, str] = {}
        self._greenlet = None

    def start(self) -> None:
        import gevent  # only the sampler needs locust's event loop

        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True)
            self._greenlet = None
            self.sample_once()  # the state at the very end of the run

    def _run(self) -> None:
        import gevent

        while True:
            self.sample_once()
            gevent.sleep(self.interval)

    def sample_once(self) -> None:
        for service, url in self.urls.items():
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    values = parse_prometheus_text(response.read().decode())
            except OSError as error:
                # A service that is down mid-run is a finding, not a crash of
                # the load test: the gap shows in the charts.
                if service not in self.unreachable:
                    logger.warning("metrics of %s unreachable at %s: %s", service, url, error)
                self.unreachable[service] = str(error)
                continue
            if RSS in values:
                self.samples.append({"t": time.time(), "service": service,
                                     "rss_bytes": values[RSS], "cpu_seconds": values.get(CPU)})


@dataclass
class MemoryTrend:
    service: str
    samples: int
    start_mb: float
    end_mb: float
    growth_ratio: float  # growth of the fitted line over the window / its start
    growing: bool

    def describe(self) -> str:
        return (f"{self.service}: memory {self.start_mb:.0f} MB -> {self.end_mb:.0f} MB "
                f"({self.growth_ratio:+.1%} over the window after warm-up, {self.samples} samples)")


def _fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope and intercept of y over x."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0
    return slope, mean_y - slope * mean_x


def memory_trends(samples: list[dict], started_at: float, warmup_seconds: float,
                  max_growth_ratio: float = 0.10, min_samples: int = 5) -> list[MemoryTrend]:
    """Per service, the trend of resident memory after warm-up. Growing means
    the fitted line rises by more than `max_growth_ratio` of its starting
    value across the window: one high sample (a GC pause, a burst) moves a
    fitted line far less than it moves the last-minus-first difference."""
    by_service: dict[str, list[tuple[float, float]]] = {}
    for sample in samples:
        if sample["t"] >= started_at + warmup_seconds:
            by_service.setdefault(sample["service"], []).append((sample["t"], sample["rss_bytes"]))
    trends = []
    for service, points in sorted(by_service.items()):
        if len(points) < min_samples:
            continue
        slope, intercept = _fit_line(points)
        first_t, last_t = points[0][0], points[-1][0]
        fitted_start = slope * first_t + intercept
        fitted_end = slope * last_t + intercept
        growth = (fitted_end - fitted_start) / fitted_start if fitted_start > 0 else 0.0
        trends.append(MemoryTrend(service, len(points), fitted_start / 2**20, fitted_end / 2**20,
                                  growth, slope > 0 and growth > max_growth_ratio))
    return trends


def cpu_percent_series(samples: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """Per service, (time, CPU % of one core) between consecutive samples."""
    series: dict[str, list[tuple[float, float]]] = {}
    previous: dict[str, dict] = {}
    for sample in samples:
        service = sample["service"]
        before = previous.get(service)
        if before and sample.get("cpu_seconds") is not None and before.get("cpu_seconds") is not None:
            elapsed = sample["t"] - before["t"]
            # A restarted service starts counting its CPU time from zero again.
            restarted = sample["cpu_seconds"] < before["cpu_seconds"]
            if elapsed > 0 and not restarted:
                busy = (sample["cpu_seconds"] - before["cpu_seconds"]) / elapsed
                series.setdefault(service, []).append((sample["t"], 100 * busy))
        previous[service] = sample
    return series
