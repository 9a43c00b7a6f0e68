"""The service's read-model, rebuild and consistency entrypoints (worker_factory), and its migrations."""
from unittest.mock import call

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import func, select

from crm_common.errors import Conflict
from crm_common.testing import schema_drift

from reporting.models import (
    Base, ContractFact, CustomerFact, CustomerLastFollowup, OpportunityFact, OrderFact, StageChangeFact,
)
from reporting.service import ReportingService

HANDLERS = [
    ("on_customer_created", "customer.created"), ("on_customer_updated", "customer.updated"),
    ("on_customer_deleted", "customer.deleted"),
    ("on_order_placed", "order.placed"), ("on_order_paid", "order.paid"),
    ("on_order_fulfilled", "order.fulfilled"), ("on_order_cancelled", "order.cancelled"),
    ("on_opportunity_created", "opportunity.created"), ("on_opportunity_updated", "opportunity.updated"),
    ("on_opportunity_stage_changed", "opportunity.stage_changed"), ("on_opportunity_won", "opportunity.won"),
    ("on_opportunity_lost", "opportunity.lost"), ("on_contract_event", "contract.terminated"),
]


def count(session, model):
    return session.execute(select(func.count()).select_from(model)).scalar()


@pytest.mark.parametrize("method, event_type", HANDLERS)
def test_each_handler_feeds_its_read_model_once(session, as_admin, customer, order, opportunity, contract,
                                                envelope, method, event_type):
    service = worker_factory(ReportingService, db=session)
    kind = event_type.split(".")[0]
    data, model = {"customer": (customer(deleted=event_type == "customer.deleted"), CustomerFact),
                   "order": (order(), OrderFact), "opportunity": (opportunity(), OpportunityFact),
                   "contract": (contract(), ContractFact)}[kind]
    event = envelope(event_type, data)
    getattr(service, method)(event)
    getattr(service, method)(event)  # redelivered
    session.commit()
    assert count(session, model) == 1
    if event_type == "opportunity.created":
        assert count(session, StageChangeFact) == 1


def test_imports_and_followups_are_handled(session, customer, followup, envelope):
    service = worker_factory(ReportingService, db=session)
    service.on_customers_imported(envelope("customer.imported", {"customers": [customer(), customer()]}))
    service.on_followup_logged(envelope("followup.logged", followup()))
    session.commit()
    assert count(session, CustomerFact) == 2 and count(session, CustomerLastFollowup) == 1


def test_rebuild_is_started_once_and_readable(session, as_admin):
    service = worker_factory(ReportingService, db=session, context=as_admin)
    run = service.start_rebuild()
    session.commit()
    assert run["status"] == "running"
    with pytest.raises(Conflict):
        service.start_rebuild()
    assert service.get_rebuild(run["id"])["id"] == run["id"]


def test_the_timer_runs_the_rebuild_as_the_system(session, as_admin, customer):
    service = worker_factory(ReportingService, db=session, context=as_admin)
    run = service.start_rebuild()
    session.commit()
    pages = {"customers": {"items": [customer()], "next_cursor": None}}
    service.customers.reporting_page.side_effect = lambda kind, cursor, limit: pages.get(
        kind, {"items": [], "next_cursor": None})
    service.sales.reporting_page.return_value = {"items": [], "next_cursor": None}

    service.run_rebuilds()

    acted_as = service.run_as.call_args.args[0]
    assert acted_as.role == "system" and acted_as.is_admin
    assert service.customers.reporting_page.call_args_list[0] == call("customers", cursor=None, limit=500)
    assert [c.args[0] for c in service.sales.reporting_page.call_args_list] == [
        "orders", "opportunities", "stage_changes", "contracts"]
    session.expire_all()
    assert service.get_rebuild(run["id"])["status"] == "done"
    assert count(session, CustomerFact) == 1


def test_consistency_compares_with_the_sources_totals(session, as_admin, customer, envelope):
    service = worker_factory(ReportingService, db=session, context=as_admin)
    service.on_customer_created(envelope("customer.created", customer()))
    service.customers.reporting_totals.return_value = {"customers": 2}
    service.sales.reporting_totals.return_value = {"orders": 0, "revenue_by_month": []}
    result = service.consistency()
    assert result["consistent"] is False
    assert result["differences"] == [{"name": "customers", "reporting": 1, "source": 2, "difference": -1}]


def test_migrations_match_the_models(tmp_path):
    assert schema_drift("reporting.migrations", Base.metadata, f"sqlite:///{tmp_path}/r.db") == []
