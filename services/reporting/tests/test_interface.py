"""The service as other services see it: real RabbitMQ, its own SQLite file.

A customer.created published by "customers" reaches the summary; the same
envelope published again is consumed but not counted twice.
"""
from nameko.standalone.events import event_dispatcher
from nameko.standalone.rpc import ServiceRpcProxy
from prometheus_client import REGISTRY

from crm_common.testing import wait_until as wait_for
from reporting.service import ReportingService

ADMIN_CONTEXT = {"user_id": "00000000-0000-4000-8000-0000000000ad", "user_role": "admin",
                 "request_id": "r-interface"}




def consumed(event_type, outcome="ok"):
    return REGISTRY.get_sample_value(
        "crm_events_consumed_total",
        {"service": "reporting", "type": event_type, "outcome": outcome}) or 0.0


def test_a_published_customer_is_counted_once(container_factory, rabbit_config, web_config,
                                              tmp_path, customer, envelope):
    config = dict(rabbit_config, **web_config, DB_URL=f"sqlite:///{tmp_path / 'reporting.db'}")
    container_factory(ReportingService, config).start()
    dispatch = event_dispatcher(rabbit_config)
    created = envelope("customer.created", customer(lifecycle_stage="prospect"))

    with ServiceRpcProxy("reporting", rabbit_config, context_data=ADMIN_CONTEXT, timeout=10) as reporting:
        assert reporting.customers_summary()["total"] == 0

        dispatch("customers", "customer.created", created)
        wait_for(lambda: reporting.customers_summary()["by_lifecycle_stage"]["prospect"] == 1,
                 message="the customer to be counted")

        handled = consumed("customer.created")
        dispatch("customers", "customer.created", created)
        wait_for(lambda: consumed("customer.created") > handled,
                 message="the redelivered event to be handled")
        assert reporting.customers_summary() == {
            "total": 1, "by_lifecycle_stage": {"lead": 0, "prospect": 1, "customer": 0, "churned": 0}}
