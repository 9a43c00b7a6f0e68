"""reporting.rebuild: refilling the facts from the sources' pages, with a fake fetch_page."""
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from crm_common.errors import Conflict, Forbidden, NotFound
from crm_common.types import utcnow

from reporting import rebuild, rollups
from reporting.ingest import apply_event
from reporting.models import (
    CustomerFact, CustomerLastFollowup, FollowupFact, FunnelCohortRollup, OpportunityFact, OrderFact, OrderLineFact,
    RebuildRun, SalesDayRollup, StageChangeFact,
)
from reporting.rebuild import Rebuilds, run_pending


class FakeSources:
    """What customers.reporting_page and sales.reporting_page would answer, ``page_size`` items a page."""

    def __init__(self, page_size=2, **items):
        self.items = {kind: list(items.get(kind, [])) for _, kind in rebuild.SOURCES}
        self.page_size = page_size
        self.calls = []
        self.before_page = None

    def __call__(self, service, kind, cursor):
        self.calls.append((service, kind, cursor))
        if self.before_page:
            self.before_page(service, kind, cursor)
        start = int(cursor or 0)
        end = start + self.page_size
        items = self.items[kind][start:end]
        return {"items": items, "next_cursor": str(end) if end < len(self.items[kind]) else None}


def count(session, model):
    return session.execute(select(func.count()).select_from(model)).scalar()


def start_and_run(session, session_factory, context, sources):
    run = Rebuilds(session, context).start()
    session.commit()
    assert run_pending(session_factory, sources) == 1
    session.expire_all()
    return Rebuilds(session, context).get(run["id"])


def test_a_run_reads_every_source_page_by_page(session, session_factory, as_admin, customer, followup, order,
                                                opportunity, contract):
    opportunities = [opportunity() for _ in range(3)]
    sources = FakeSources(
        customers=[customer() for _ in range(5)], followups=[followup()], orders=[order(), order()],
        opportunities=opportunities, stage_changes=[o["stage_change"] for o in opportunities],
        contracts=[contract()])
    run = Rebuilds(session, as_admin).start()
    session.commit()
    assert run["status"] == "running" and run["requested_by"] == as_admin.user_id

    assert run_pending(session_factory, sources) == 1
    session.expire_all()
    finished = Rebuilds(session, as_admin).get(run["id"])
    assert finished["status"] == "done" and finished["finished_at"]
    assert {kind: finished["counts"][kind] for _, kind in rebuild.SOURCES} == {
        "customers": 5, "followups": 1, "orders": 2, "opportunities": 3, "stage_changes": 3, "contracts": 1}
    assert count(session, CustomerFact) == 5 and count(session, OrderLineFact) == 4
    assert count(session, StageChangeFact) == 3
    # Customers came in three pages of two (cursor None, "2", "4"), each source in order.
    assert [c for c in sources.calls if c[1] == "customers"] == [
        ("customers", "customers", None), ("customers", "customers", "2"), ("customers", "customers", "4")]
    assert [c[0] for c in sources.calls][-1] == "sales"
    # Nothing left to do on the next tick.
    assert run_pending(session_factory, sources) == 0


def test_rows_gone_from_the_source_are_swept_and_the_rest_refreshed(session, session_factory, as_admin,
                                                                   customer, order, envelope):
    kept, gone = customer(version=1), customer()
    apply_event(session, envelope("customer.created", kept))
    apply_event(session, envelope("customer.created", gone))
    gone_order = order()
    apply_event(session, envelope("order.placed", gone_order))
    session.commit()
    # The source renamed "kept" without a new version (say a column reporting now keeps).
    sources = FakeSources(customers=[dict(kept, name="Renamed Ltd")])

    finished = start_and_run(session, session_factory, as_admin, sources)

    assert finished["status"] == "done"
    assert session.get(CustomerFact, gone["id"]) is None
    assert session.get(CustomerFact, kept["id"]).name == "Renamed Ltd"  # the rebuild wins at equal version
    assert session.get(OrderFact, gone_order["id"]) is None and count(session, OrderLineFact) == 0
    assert finished["counts"]["removed_customer_facts"] == 1
    assert finished["counts"]["removed_order_line_facts"] == 2


def test_a_run_ends_with_rollups_equal_to_the_facts(session, session_factory, as_admin, order, opportunity,
                                                    envelope):
    """The sweep's removals reach the rollups, and a rollup that went wrong is computed again."""
    gone, kept, deal = order(), order(total="42.00"), opportunity()
    apply_event(session, envelope("order.placed", gone))
    apply_event(session, envelope("opportunity.created", deal))
    session.execute(text("UPDATE sales_day_rollups SET orders = orders + 5"))
    session.commit()
    assert rollups.differences(session)["sales_day_rollups"] != []

    finished = start_and_run(session, session_factory, as_admin, FakeSources(orders=[kept]))

    assert finished["status"] == "done"
    assert rollups.differences(session) == {rollup.table: [] for rollup in rollups.ROLLUPS}
    assert session.execute(select(func.sum(SalesDayRollup.orders), func.sum(SalesDayRollup.revenue))).one() == (
        1, Decimal("42.00"))
    assert session.execute(select(func.count()).select_from(FunnelCohortRollup)).scalar() == 0  # swept, recomputed


def test_each_customers_last_followup_is_computed_again_from_the_followups_read(
        session, session_factory, as_admin, followup, envelope):
    customer_id = "c0ffee00-0000-4000-8000-000000000001"
    apply_event(session, envelope("followup.logged", followup(customer_id=customer_id,
                                                              occurred_at="2026-11-20T10:00:00+00:00")))
    session.commit()
    # The source holds an older follow-up only (the newer one belonged to a customer erased since).
    kept = followup(customer_id=customer_id, occurred_at="2026-11-02T10:00:00+00:00")

    assert start_and_run(session, session_factory, as_admin, FakeSources(followups=[kept]))["status"] == "done"

    last = session.get(CustomerLastFollowup, customer_id).last_followup_at
    assert last.isoformat() == "2026-11-02T10:00:00+00:00"


def test_an_event_applied_during_the_run_survives_the_sweep(session, session_factory, as_admin, customer,
                                                            order, envelope):
    late_order = order()
    sources = FakeSources(customers=[customer()])

    def event_arrives(service, kind, cursor):
        if kind == "orders":  # the order is created at the source after the rebuild read its orders... nearly
            with session_factory() as other:
                apply_event(other, envelope("order.placed", late_order))
                other.commit()
    sources.before_page = event_arrives

    finished = start_and_run(session, session_factory, as_admin, sources)

    assert finished["status"] == "done"
    assert session.get(OrderFact, late_order["id"]) is not None
    assert count(session, OrderLineFact) == 2


def test_queries_see_the_old_rows_while_a_run_is_in_progress(session, session_factory, as_admin, customer,
                                                             envelope):
    existing = customer()
    apply_event(session, envelope("customer.created", existing))
    session.commit()
    seen_mid_run = []
    sources = FakeSources(customers=[existing, customer()])
    sources.before_page = lambda service, kind, cursor: seen_mid_run.append(count(session, CustomerFact))
    start_and_run(session, session_factory, as_admin, sources)
    assert min(seen_mid_run) >= 1  # never emptied


def test_a_second_run_is_refused_while_one_is_running(session, as_admin):
    Rebuilds(session, as_admin).start()
    session.commit()
    with pytest.raises(Conflict):
        Rebuilds(session, as_admin).start()


def test_a_stale_run_is_failed_and_a_new_one_may_start(session, session_factory, as_admin, customer):
    first = Rebuilds(session, as_admin).start(now=utcnow() - rebuild.STALE_AFTER - timedelta(seconds=5))
    session.commit()
    second = Rebuilds(session, as_admin).start()
    session.commit()
    assert second["id"] != first["id"]
    failed = Rebuilds(session, as_admin).get(first["id"])
    assert failed["status"] == "failed" and "stopped" in failed["error"]
    # Only the new run is worked on.
    assert run_pending(session_factory, FakeSources(customers=[customer()])) == 1
    session.expire_all()
    assert Rebuilds(session, as_admin).get(second["id"])["status"] == "done"
    assert Rebuilds(session, as_admin).get(first["id"])["status"] == "failed"


def test_a_run_whose_worker_died_is_failed_by_the_next_tick(session, session_factory, as_admin):
    run = Rebuilds(session, as_admin).start()
    session.get(RebuildRun, run["id"]).heartbeat_at = utcnow() - rebuild.STALE_AFTER - timedelta(seconds=1)
    session.commit()
    assert run_pending(session_factory, FakeSources()) == 0
    session.expire_all()
    assert Rebuilds(session, as_admin).get(run["id"])["status"] == "failed"


def test_a_failing_source_fails_the_run_and_keeps_the_facts(session, session_factory, as_admin, customer,
                                                            envelope):
    apply_event(session, envelope("customer.created", customer()))
    session.commit()

    def broken(service, kind, cursor):
        raise RuntimeError("sales is down")

    finished = start_and_run(session, session_factory, as_admin, broken)
    assert finished["status"] == "failed" and "RuntimeError" in finished["error"]
    assert count(session, CustomerFact) == 1
    Rebuilds(session, as_admin).start()  # a failed run does not block the next one


def test_only_admins_start_or_read_runs(session, as_admin, as_alice):
    with pytest.raises(Forbidden):
        Rebuilds(session, as_alice).start()
    run = Rebuilds(session, as_admin).start()
    with pytest.raises(Forbidden):
        Rebuilds(session, as_alice).get(run["id"])
    with pytest.raises(NotFound):
        Rebuilds(session, as_admin).get("00000000-0000-4000-8000-000000000000")


def test_pages_write_followups_and_stage_changes_again_with_fresh_refreshed_at(
        session, session_factory, as_admin, followup, opportunity, envelope):
    item = followup()
    apply_event(session, envelope("followup.logged", item))
    created = opportunity()
    apply_event(session, envelope("opportunity.created", created))
    session.commit()
    finished = start_and_run(session, session_factory, as_admin, FakeSources(
        followups=[item], opportunities=[created], stage_changes=[created["stage_change"]]))
    assert finished["status"] == "done"
    assert count(session, FollowupFact) == 1 and count(session, StageChangeFact) == 1
    assert count(session, OpportunityFact) == 1


def test_events_and_a_rebuild_on_postgresql(as_admin, customer, followup, order, opportunity, contract, envelope):
    """The same ON CONFLICT statements on the database we ship (migrated schema, real types)."""
    from crm_common.db import make_engine, make_session_factory
    from crm_common.migrate import upgrade
    from crm_common.testing import postgres_database

    with postgres_database("reporting_rebuild") as url:
        upgrade("reporting.migrations", url)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        try:
            placed = order(version=2)
            with factory() as session:
                apply_event(session, envelope("order.paid", dict(placed, version=3, status="paid")))
                apply_event(session, envelope("order.placed", placed))
                item = followup()
                apply_event(session, envelope("followup.logged", item))
                apply_event(session, envelope("followup.logged", followup(
                    customer_id=item["customer_id"], occurred_at="2026-10-01T00:00:00+00:00")))
                apply_event(session, envelope("customer.imported", {"customers": [customer(), customer()]}))
                session.commit()
            created = opportunity()
            sources = FakeSources(customers=[customer()], followups=[item], orders=[placed],
                                  opportunities=[created], stage_changes=[created["stage_change"]],
                                  contracts=[contract()])
            with factory() as session:
                finished = start_and_run(session, factory, as_admin, sources)
                assert finished["status"] == "done", finished["error"]
                assert count(session, CustomerFact) == 1 and count(session, FollowupFact) == 1
                assert session.get(OrderFact, placed["id"]).status == "paid"  # version 3 stays
                assert count(session, OrderLineFact) == 2 and count(session, StageChangeFact) == 1
        finally:
            engine.dispose()
