"""The service as other services see it: real RabbitMQ, its own SQLite file.

An order.placed published by "sales" reaches the read models (the order and
its lines); the same envelope published again is consumed but written once.
"""
from nameko.standalone.events import event_dispatcher
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, text

from crm_common.testing import wait_until as wait_for
from reporting.service import ReportingService


def consumed(event_type, outcome="ok"):
    return REGISTRY.get_sample_value(
        "crm_events_consumed_total",
        {"service": "reporting", "type": event_type, "outcome": outcome}) or 0.0


def lag_observations(event_type):
    return REGISTRY.get_sample_value(
        "crm_reporting_event_lag_seconds_count", {"event_type": event_type}) or 0.0


def test_a_published_order_reaches_the_read_model_once(container_factory, rabbit_config, web_config,
                                                       tmp_path, order, envelope):
    database = tmp_path / "reporting.db"
    config = dict(rabbit_config, **web_config, DB_URL=f"sqlite:///{database}")
    container_factory(ReportingService, config).start()
    engine = create_engine(f"sqlite:///{database}")

    def stored():
        with engine.connect() as connection:
            orders = connection.execute(text("SELECT status, total FROM order_facts")).all()
            lines = connection.execute(text("SELECT count(*) FROM order_line_facts")).scalar()
        return [tuple(row) for row in orders], lines

    dispatch = event_dispatcher(rabbit_config)
    placed = envelope("order.placed", order(total="300.00"))
    lag_before = lag_observations("order.placed")

    dispatch("sales", "order.placed", placed)
    wait_for(lambda: stored()[0], message="the order to reach the read model")
    assert stored() == ([("confirmed", 300)], 2)
    assert lag_observations("order.placed") == lag_before + 1

    handled = consumed("order.placed")
    dispatch("sales", "order.placed", placed)
    wait_for(lambda: consumed("order.placed") > handled, message="the redelivered event to be handled")
    assert stored() == ([("confirmed", 300)], 2)
    engine.dispose()
