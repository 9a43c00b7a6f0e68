"""The service's entrypoints, through nameko's worker_factory, and its migrations."""
from nameko.testing.services import worker_factory

from crm_common.testing import schema_drift

from reporting.models import Base
from reporting.service import ReportingService


def test_handlers_feed_the_summary_once_and_in_version_order(session, as_admin, customer, envelope):
    service = worker_factory(ReportingService, db=session, context=as_admin)
    created = envelope("customer.created", customer())
    service.on_customer_created(created)
    service.on_customer_created(created)  # redelivered
    assert service.customers_summary()["by_lifecycle_stage"]["lead"] == 1

    cid = created["data"]["id"]
    service.on_customer_updated(envelope("customer.updated", customer(
        id=cid, version=3, lifecycle_stage="customer", changes={})))
    service.on_customer_updated(envelope("customer.updated", customer(
        id=cid, version=2, lifecycle_stage="prospect", changes={})))
    assert service.customers_summary() == {
        "total": 1, "by_lifecycle_stage": {"lead": 0, "prospect": 0, "customer": 1, "churned": 0}}

    other = customer()
    service.on_customer_deleted(envelope("customer.deleted", customer(
        id=other["id"], version=2, deleted=True)))
    service.on_customer_created(envelope("customer.created", other))
    assert service.customers_summary()["total"] == 1


def test_summary_uses_the_callers_context(session, as_admin, as_bob, customer, envelope):
    feeder = worker_factory(ReportingService, db=session, context=as_admin)
    feeder.on_customer_created(envelope("customer.created", customer()))
    assert worker_factory(ReportingService, db=session, context=as_bob).customers_summary()["total"] == 0
    assert feeder.customers_summary({"region": "east"})["total"] == 1


def test_migrations_match_the_models(tmp_path):
    assert schema_drift("reporting.migrations", Base.metadata, f"sqlite:///{tmp_path}/r.db") == []
