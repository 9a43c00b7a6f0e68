"""crm_common.metrics and crm_common.ops: what Prometheus and the readiness check see."""
import json

import pytest
import requests
from nameko.exceptions import RemoteError
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy
from nameko.testing.utils import find_free_port
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from crm_common_test_helpers import wait_for
from crm_common.context import Context
from crm_common.errors import NotFound, ValidationFailed
from crm_common.db import make_engine
from crm_common.metrics import Metrics, time_statements
from crm_common.ops import OpsEndpoints


def make_service(name):
    # Attribute names as the services use them: ``metrics`` for the provider.
    class MeasuredService(OpsEndpoints):
        context = Context()
        metrics = Metrics()

        @rpc
        def fine(self):
            return "ok"

        @rpc
        def missing(self):
            raise NotFound("no such record")

        @rpc
        def invalid(self):
            raise ValidationFailed("bad", {"name": ["Required."]})

        @rpc
        def broken(self):
            raise RuntimeError("bug")

    MeasuredService.name = name
    return MeasuredService


@pytest.fixture
def measured(container_factory, rabbit_config, unique_name):
    """A running service with metrics and ops endpoints; (name, base_url)."""
    name = unique_name("measured")
    port = find_free_port()
    container = container_factory(
        make_service(name), dict(rabbit_config, WEB_SERVER_ADDRESS=f"127.0.0.1:{port}"))
    container.start()
    return name, f"http://127.0.0.1:{port}"


def test_rpc_requests_are_counted_by_method_and_outcome(measured, rabbit_config, sample):
    name, _ = measured

    def requests_total(method, outcome):
        return sample("crm_rpc_requests_total", service=name, method=method, outcome=outcome)

    with ServiceRpcProxy(name, rabbit_config, timeout=10) as service:
        assert service.fine() == "ok"
        assert service.fine() == "ok"
        with pytest.raises(NotFound) as missing:
            service.missing()
        assert missing.value.detail == "no such record"
        with pytest.raises(ValidationFailed) as invalid:
            service.invalid()
        assert invalid.value.errors == {"name": ["Required."]}
        with pytest.raises(RemoteError):
            service.broken()

    # Counted just after the reply went out.
    wait_for(lambda: requests_total("broken", "error") == 1, message="error counted")
    assert requests_total("fine", "success") == 2
    assert requests_total("missing", "client_error") == 1
    assert requests_total("invalid", "client_error") == 1
    # Never counted (absent, or zero):
    assert not requests_total("fine", "error")
    assert not requests_total("missing", "error")
    assert not requests_total("broken", "client_error")

    count = sample("crm_rpc_duration_seconds_count", service=name, method="fine")
    assert count == 2
    assert sample("crm_rpc_duration_seconds_bucket", service=name, method="fine", le="+Inf") == 2
    assert 0 < sample("crm_rpc_duration_seconds_sum", service=name, method="fine") < 5
    assert sample("crm_workers_max", service=name) == 10
    wait_for(lambda: sample("crm_workers_in_use", service=name) == 0, message="workers done")


def test_metrics_endpoint_serves_prometheus_exposition(measured, rabbit_config):
    name, base = measured
    with ServiceRpcProxy(name, rabbit_config, timeout=10) as service:
        service.fine()

    def scrape():
        response = requests.get(base + "/metrics", timeout=5)
        assert response.status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(response.text)}
        samples = [s for s in families["crm_rpc_requests"].samples
                   if s.labels.get("service") == name and s.name == "crm_rpc_requests_total"]
        return (response, families, samples) if samples else None

    response, families, samples = wait_for(scrape, message="request counted in /metrics")
    # The text exposition format (parsed above by prometheus_client's own parser).
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    assert "# TYPE crm_rpc_requests_total counter" in response.text
    assert {(s.labels["method"], s.labels["outcome"], s.value) for s in samples} == {("fine", "success", 1.0)}
    for family in ("crm_rpc_duration_seconds", "crm_outbox_pending", "crm_events_published",
                   "crm_events_consumed", "crm_http_requests", "crm_http_request_duration_seconds"):
        assert family in families


def test_health_endpoint_answers_200(measured):
    name, base = measured
    response = requests.get(base + "/health", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert json.loads(response.text) == {"service": name, "status": "ok"}


def test_ping_over_rpc(measured, rabbit_config, sample):
    name, _ = measured
    with ServiceRpcProxy(name, rabbit_config, timeout=10) as service:
        assert service.ping() == {"service": name, "status": "ok"}
    wait_for(lambda: sample("crm_rpc_requests_total", service=name, method="ping",
                            outcome="success") == 1, message="ping counted")


def test_http_workers_are_not_counted_as_rpc(measured, sample):
    name, base = measured
    assert requests.get(base + "/health", timeout=5).status_code == 200
    assert not sample("crm_rpc_requests_total", service=name, method="health", outcome="success")  # never counted


def test_database_statements_are_timed_by_kind_without_their_sql():
    engine = make_engine("sqlite://")
    time_statements(engine, "timed-service")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
        connection.execute(text("INSERT INTO notes (body) VALUES ('secret body')"))
        connection.execute(text("SELECT body FROM notes")).all()
        try:
            connection.execute(text("SELECT nothing FROM nowhere"))
        except Exception as error:  # noqa: BLE001 - the failure itself is what is tested
            assert "nowhere" in str(error)
        connection.execute(text("SELECT 1")).all()

    def count(kind):
        return REGISTRY.get_sample_value("crm_db_query_duration_seconds_count",
                                         {"service": "timed-service", "statement": kind})

    assert count("select") == 2 and count("insert") == 1 and count("other") == 1
    assert "secret body" not in generate_latest(REGISTRY).decode()
