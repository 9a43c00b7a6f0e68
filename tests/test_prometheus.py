"""A real Prometheus, with deploy/prometheus/'s scrape config and rules, against the running system.

The config is deploy/prometheus/prometheus.yml itself with each job's targets
pointed at the ports this test system really uses (they are free ports, not
8000/8101...), scraping and evaluating every second. Checked through
Prometheus' HTTP API, as an operator would: every target is up, every rule
evaluates without error, and the recording rules produce numbers. The
`prometheus` binary comes from Debian's package (scripts/ensure-promtool.sh).
"""
import math
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
import yaml

from crm_common.testing import free_port, stop_process
from crm_common.testing_system import RABBIT_API

from conftest import wait_until

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
BACKENDS = ("customers", "sales", "notifications", "reporting")
# Every recording rule, and the label values it must have a finite value for:
# the RPC rules one per backend service, the HTTP rules the gateway.
RECORDED = {
    "service:crm_rpc_requests:rate5m": ("service", BACKENDS),
    "service:crm_rpc_errors:ratio_rate5m": ("service", BACKENDS),
    "service:crm_rpc_duration_seconds:p95_5m": ("service", BACKENDS),
    "job:crm_http_requests:rate5m": ("job", ("gateway",)),
    "job_route:crm_http_requests:rate5m": ("job", ("gateway",)),
    "job:crm_http_requests_5xx:ratio_rate5m": ("job", ("gateway",)),
    "job:crm_http_request_duration_seconds:p95_5m": ("job", ("gateway",)),
    "job_route:crm_http_request_duration_seconds:p95_5m": ("job", ("gateway",)),
    "job:crm_http_slow_requests:ratio_rate5m": ("job", ("gateway",)),
    "job:crm_http_slow_requests:ratio_rate30m": ("job", ("gateway",)),
    "job:crm_http_slow_requests:ratio_rate1h": ("job", ("gateway",)),
    "job:crm_http_slow_requests:ratio_rate6h": ("job", ("gateway",)),
}


def scrape_config_for(system, rule_files):
    """deploy/prometheus/prometheus.yml, retargeted at this system, every second."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(path) for path in rule_files]
    gateway = urlparse(system.gateway_url).netloc
    broker = f"{urlparse(RABBIT_API).hostname}:15692"
    vhost = urlparse(system.env["AMQP_URI"]).path.lstrip("/")
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if name == "gateway":
            targets = [gateway]
        elif name in BACKENDS:
            targets = [f"127.0.0.1:{system.http_ports[name]}"]
        else:
            assert name.startswith("rabbitmq"), f"a job this test does not know: {name}"
            targets = [broker]
        job["static_configs"] = [{"targets": targets}]
        if name == "rabbitmq-queues":
            # Only this run's queues, not those of every test vhost on the broker.
            job["params"]["vhost"] = [vhost]
    return config


@contextmanager
def prometheus(config, workdir):
    binary = shutil.which("prometheus")
    assert binary, "prometheus not found: run scripts/ensure-promtool.sh (`make test` does)"
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(workdir / "prometheus.log", "wb")
    process = subprocess.Popen(
        [binary, f"--config.file={workdir / 'prometheus.yml'}",
         f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def prom(system, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("prometheus")
    config = scrape_config_for(system, sorted((DEPLOY / "rules").glob("*.yml")))
    with prometheus(config, workdir) as (url, process):
        def api_ready():
            assert process.poll() is None, (workdir / "prometheus.log").read_text()[-3000:]
            try:
                return requests.get(url + "/-/ready", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False
        wait_until(api_ready, 30, interval=0.2, message="Prometheus /-/ready")
        yield url


def rules_in(folder):
    return [rule for path in sorted(folder.glob("*.yml"))
            for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def api(prom, path, **params):
    body = requests.get(prom + "/api/v1/" + path, params=params, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]


def test_every_target_is_up(prom, system):
    jobs = {job["job_name"] for job in yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"]}

    health = {}

    def all_up():
        targets = api(prom, "targets", state="active")["activeTargets"]
        health.clear()
        health.update((target["labels"]["job"], (target["health"], target["lastError"])) for target in targets)
        return set(health) == jobs and all(state == "up" for state, _ in health.values())
    try:
        wait_until(all_up, 30, interval=0.25, message="every scrape target up")
    except AssertionError:
        raise AssertionError(f"targets not all up after 30 s (job: (health, last error)): {health}") from None
    assert set(health) == jobs == {"gateway", *BACKENDS, "rabbitmq", "rabbitmq-queues"}
    # "Which service, which instance": the instance is the host:port scraped.
    up = api(prom, "query", query="up")["result"]
    instances = {(sample["metric"]["job"], sample["metric"]["instance"]) for sample in up}
    assert instances >= {("gateway", urlparse(system.gateway_url).netloc),
                         *((name, f"127.0.0.1:{system.http_ports[name]}") for name in BACKENDS)}


def test_recording_rules_produce_values(prom, system, admin):
    records = {rule["record"] for rule in rules_in(DEPLOY / "rules") if "record" in rule}
    assert records == set(RECORDED), "RECORDED must list every recording rule"
    missing = []

    def traffic_then_values():
        # /ready pings every backend over RPC; the API calls are HTTP traffic at
        # the gateway, one of them a 404, so not every request is a success.
        requests.get(system.gateway_url + "/ready", timeout=5)
        admin.get("/customers")
        admin.get("/customers/00000000-0000-0000-0000-000000000000")
        values = {}
        missing.clear()
        for record, (label, expected) in RECORDED.items():
            result = api(prom, "query", query=record)["result"]
            values[record] = {sample["metric"].get(label): float(sample["value"][1]) for sample in result}
            missing.extend(f"{record}{{{label}={name!r}}}" for name in expected
                           if not math.isfinite(values[record].get(name, math.nan)))
        return not missing and values
    try:
        values = wait_until(traffic_then_values, 30, interval=0.5, message="every recording rule has a value")
    except AssertionError:
        raise AssertionError(f"recording rules without a value after 30 s: {missing}") from None
    for service in BACKENDS:
        assert values["service:crm_rpc_requests:rate5m"][service] > 0
        assert values["service:crm_rpc_errors:ratio_rate5m"][service] == 0
    assert values["job:crm_http_requests:rate5m"]["gateway"] > 0
    # A test system answers these in well under 300 ms.
    assert 0 <= values["job:crm_http_slow_requests:ratio_rate5m"]["gateway"] < 1


def test_every_rule_evaluates_without_error(prom):
    def all_evaluated():
        groups = api(prom, "rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return all(rule["lastEvaluation"] != "0001-01-01T00:00:00Z" for rule in rules) and rules
    rules = wait_until(all_evaluated, 30, interval=0.25, message="every rule evaluated once")
    assert len(rules) == len(rules_in(DEPLOY / "rules"))
    assert [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"] == []


def test_queue_alerts_read_metrics_the_broker_exports(prom, system):
    # The dead-letter, queue-depth and no-consumer alerts read per-queue series
    # of the rabbitmq-queues job: they exist for this system's RPC queues.
    vhost = urlparse(system.env["AMQP_URI"]).path.lstrip("/")

    def consumers():
        result = api(prom, "query", query=f'rabbitmq_detailed_queue_consumers{{vhost="{vhost}"}}')["result"]
        return {sample["metric"]["queue"]: float(sample["value"][1]) for sample in result}
    queues = wait_until(lambda: {f"rpc-{name}" for name in BACKENDS} <= set(consumers()) and consumers(),
                        30, interval=0.25, message="per-queue consumer counts")
    assert all(queues[f"rpc-{name}"] >= 1 for name in BACKENDS), queues
    depth = api(prom, "query", query=f'rabbitmq_detailed_queue_messages{{vhost="{vhost}", queue="rpc-customers"}}')
    assert depth["result"], "no rabbitmq_detailed_queue_messages for rpc-customers"
