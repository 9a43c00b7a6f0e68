"""No Grafana panel and no Prometheus rule queries a metric nobody exports.

Loads every dashboard under deploy/grafana/dashboards and every rule file under
deploy/prometheus/rules, takes the metric names out of each PromQL expression
with a small tokenizer, and checks each one against what the running system
exports: every service's /metrics, the gateway's, RabbitMQ's rabbitmq_prometheus
plugin (aggregated /metrics and the /metrics/detailed families the Prometheus
config scrapes) and Prometheus itself (``up``, ``ALERTS``, ``ALERTS_FOR_STATE``).
A metric counts as exported when a sample of it is served or its family is
declared (# TYPE): a labelled counter has no sample until its first event.
"""
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import yaml

from api_helpers import unique

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
DATASOURCE_UID = yaml.safe_load(
    (ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
)["datasources"][0]["uid"]
RABBITMQ_METRICS = [
    "http://127.0.0.1:15692/metrics",
    "http://127.0.0.1:15692/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count",
]
PROMETHEUS_OWN = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped"}

# --- the PromQL tokenizer ----------------------------------------------------------------

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "inf", "nan", "atan2"}
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPINGS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBERS = re.compile(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", re.IGNORECASE)
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr):
    """The metric names an expression reads: identifiers that are not functions or aggregations
    (followed by '('), keywords, label names (inside {...} or by/without/on/ignoring (...)),
    strings, durations (inside [...] or after offset) or numbers."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPINGS.sub(" ", text)
    text = re.sub(r"\boffset\s+\S+", " ", text)
    text = _NUMBERS.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        if text[match.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group().lower() in KEYWORDS:
            continue
        names.add(match.group())
    return names


@pytest.mark.parametrize("expr, names", [
    ('histogram_quantile(0.95, sum by (service, le) (rate(crm_rpc_duration_seconds_bucket{service="x"}[5m])))',
     {"crm_rpc_duration_seconds_bucket"}),
    ('sum(rate(a_total{status=~"5.."}[1m])) / on (job) group_left sum without (route) (b:rec:rate5m offset 1h)',
     {"a_total", "b:rec:rate5m"}),
    ('up == 0 and ignoring(instance) absent(foo) or vector(1) > bool 2e3', {"up", "foo"}),
    ('label_replace(x, "dst", "$1", "src", "(.*)") * 100', {"x"}),
])
def test_the_tokenizer_finds_metric_names_only(expr, names):
    assert metric_names(expr) == names


# --- what the dashboards and rules ask for ------------------------------------------------

def dashboard_panels(dashboard):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # rows


def dashboard_queries():
    for path in DASHBOARDS:
        for panel in dashboard_panels(json.loads(path.read_text())):
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", target["expr"]


def rules():
    for path in RULE_FILES:
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            for rule in group.get("rules", []):
                yield path.name, rule


def test_every_dashboard_is_valid_and_every_panel_has_a_datasource_and_a_query():
    assert len(DASHBOARDS) >= 4, "overview, business, load test and one per service"
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] not in uids, f"{path.name}: duplicate uid"
        uids.add(dashboard["uid"])
        assert dashboard["title"] and dashboard["schemaVersion"] >= 36, path.name
        panels = list(dashboard_panels(dashboard))
        assert panels, f"{path.name} has no panels"
        for panel in panels:
            if panel.get("type") == "row":
                continue
            where = f"{path.name}: {panel.get('title')!r}"
            assert panel.get("datasource", {}).get("uid") == DATASOURCE_UID, f"{where}: no provisioned datasource"
            assert panel.get("targets"), f"{where}: no query"
            for target in panel["targets"]:
                assert target.get("expr", "").strip(), f"{where}: an empty query"
                assert target.get("datasource", panel["datasource"])["uid"] == DATASOURCE_UID, where
    assert {path.stem for path in DASHBOARDS} >= {
        "overview", "business", "load-test", "service-gateway", "service-customers", "service-sales",
        "service-notifications", "service-reporting"}


# --- what the running system exports -------------------------------------------------------

def exported_names(exposition):
    """Sample names, plus the sample names each declared family (# TYPE) can have."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(None, 3)
            names.add(family)
            if kind in ("histogram", "summary"):
                names.update(family + suffix for suffix in ("_bucket", "_sum", "_count", "_created"))
            if kind == "counter":
                base = family.removesuffix("_total")
                names.update((base + "_total", base + "_created"))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def drive_traffic(make_user):
    """A little of what users do, so the counters with labels have samples."""
    rep = make_user("sales")
    customer = rep.post("/customers", json={"kind": "company", "name": unique("Dashboard Test GmbH")})
    assert customer.status_code == 201, customer.text
    at = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    followup = rep.post(f"/customers/{customer.json()['id']}/followups",
                        json={"type": "call", "occurred_at": at, "summary": "Checked the dashboards"})
    assert followup.status_code == 201, followup.text
    assert rep.get("/customers/does-not-exist").status_code in (400, 404)


def test_every_panel_and_rule_queries_metrics_the_system_exports(system, make_user):
    drive_traffic(make_user)
    scraped = {instance: system.metrics(instance) for instance in system.http_ports}
    scraped["gateway"] = requests.get(system.gateway_url + "/metrics", timeout=5).text
    for url in RABBITMQ_METRICS:
        scraped[url] = requests.get(url, timeout=10).text
    exported = set(PROMETHEUS_OWN)
    for text in scraped.values():
        exported |= exported_names(text)
    # The traffic above shows up as samples, not only as declared families.
    assert 'crm_customers_created_total{kind="company"}' in scraped["customers"]
    assert 'crm_followups_logged_total{type="call"}' in scraped["customers"]

    recorded = {rule["record"] for _, rule in rules() if "record" in rule}
    queries = list(dashboard_queries()) + [(f"{name}: {rule.get('record') or rule.get('alert')}", rule["expr"])
                                           for name, rule in rules()]
    missing = sorted({(where, name) for where, expr in queries for name in metric_names(expr)
                      if name not in exported and name not in recorded})
    assert not missing, "queried but exported by nobody:\n" + "\n".join(f"  {w}: {n}" for w, n in missing)
