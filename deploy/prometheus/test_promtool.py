"""The Prometheus configuration as promtool sees it: `make test` runs this as its
own suite (scripts/run-tests.sh), so every check and every alert unit test
counts as a passed or failed test.

- `promtool check config` on prometheus.yml (which also checks the rule files it loads);
- `promtool check rules` on each rule file;
- `promtool test rules` on each unit-test file in tests/ (synthetic series:
  each alert fires when it should and stays silent when it should not);
- that every alert has those tests, a severity, a summary and a runbook, and a
  row in the Alerts table of docs/operations.md.

promtool comes from Debian's `prometheus` package (scripts/ensure-promtool.sh,
run by `make test`). Without it these tests fail rather than skip.
"""
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RULE_FILES = sorted((HERE / "rules").glob("*.yml"))
TEST_FILES = sorted((HERE / "tests").glob("*.yml"))
SERVICE_PORTS = {"gateway": 8000, "customers": 8101, "sales": 8102, "notifications": 8103,
                 "reporting": 8104}


def promtool(*args):
    binary = shutil.which("promtool")
    assert binary, "promtool not found: run scripts/ensure-promtool.sh (`make test` does)"
    result = subprocess.run([binary, *args], cwd=HERE, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def alert_rules():
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule]


def test_config_is_valid():
    out = promtool("check", "config", "prometheus.yml")
    # The config loads every rule file: a glob that matched nothing would pass silently.
    assert f"{len(RULE_FILES)} rule files found" in out, out


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda path: path.name)
def test_rules_are_valid(path):
    promtool("check", "rules", str(path))


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda path: path.name)
def test_alert_unit_tests_pass(path):
    promtool("test", "rules", str(path))


def test_every_alert_is_unit_tested_firing_and_silent():
    firing, silent = set(), set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts with no test that they fire"
    assert names - silent == set(), "alerts with no test that they stay silent"


def test_every_alert_says_how_bad_and_what_to_do():
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        # A runbook, not a restatement of the summary.
        assert len(rule["annotations"]["description"]) > 200, rule["alert"]


def test_the_operations_doc_alerts_table_lists_every_alert():
    readme = (ROOT / "docs" / "operations.md").read_text()
    section = readme.split("### Alerts", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    rows = set(re.findall(r"^\| `?(\w+)`? \|", section, re.M))
    assert {rule["alert"] for rule in alert_rules()} <= rows


def test_scrape_config_has_every_service_and_rabbitmq():
    config = yaml.safe_load((HERE / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for service, port in SERVICE_PORTS.items():
        assert jobs[service]["static_configs"][0]["targets"] == [f"127.0.0.1:{port}"]
    assert jobs["rabbitmq"]["static_configs"][0]["targets"] == ["127.0.0.1:15692"]
    queues = jobs["rabbitmq-queues"]
    assert queues["metrics_path"] == "/metrics/detailed"
    assert set(queues["params"]["family"]) == {"queue_coarse_metrics", "queue_consumer_count"}
