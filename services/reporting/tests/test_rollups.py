"""reporting.rollups: whatever events arrive, in any order and any number of times, the rollups equal
the facts, and the two reports that read them answer as the same reports computed from the facts.

The from-facts answers come from ``FromFacts``: sales-by-period through its fact query (the one it
still runs for customer-attribute filters), and the funnel as it was computed before the rollups
(kept here, below, as the reference).
"""
import random
import uuid
from decimal import Decimal
from datetime import date, datetime, time, timedelta, timezone

import eventlet
import pytest
from sqlalchemy import extract, func, select, text, update

from crm_common.db import make_engine, make_session_factory
from crm_common.migrate import upgrade
from crm_common.testing import memory_session, postgres_database
from crm_common.testing_cast import ALICE, BOB, MANAGER
from crm_common.validation import load

from reporting import rollups
from reporting.ingest import apply_event
from reporting.models import (
    Base, CustomerFact, OpportunityFact, OrderFact, SalesDayRegionRollup, SalesDayRollup, StageChangeFact)
from reporting.personal_data import apply_erased
from reporting.reports import Reports, percent, days
from reporting.schemas import FunnelFilters

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
PIPELINE = "00000000-0000-4000-8000-0000000000a1"
OTHER_PIPELINE = "00000000-0000-4000-8000-0000000000b2"
OWNERS = ((ALICE, "east"), (BOB, "west"), (MANAGER, "east"), (None, None))
DAYS = (date(2025, 12, 31), date(2026, 10, 1), date(2026, 10, 31), date(2026, 11, 2), date(2026, 11, 29))
NO_DIFFERENCES = {rollup.table: [] for rollup in rollups.ROLLUPS}


# --- the databases ---------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def factory(request):
    """Sessions on a fresh database: SQLite from the models, PostgreSQL migrated as production is."""
    if request.param == "sqlite":
        engine = memory_session(Base.metadata).get_bind()
        yield make_session_factory(engine)
        engine.dispose()
        return
    with postgres_database("crm_test_rollups") as url:
        upgrade("reporting.migrations", url)
        engine = make_engine(url)
        yield make_session_factory(engine)
        engine.dispose()


# --- a random stream of events -----------------------------------------------------

def moment(day, hour=10):
    return datetime.combine(day, time(hour), tzinfo=timezone.utc)


def order_history(rng, order, customers):
    """The events one order goes through: placed (or drafted first), then paid, cancelled or moved
    to another owner (or day, or currency), each a newer version of the whole order."""
    owner, team = rng.choice(OWNERS)
    total = rng.choice(["100.00", "250.50", "0.01", "1999.99"])
    current = order(version=1, status="confirmed", owner_id=owner, owner_team_id=team,
                    confirmed_at=moment(rng.choice(DAYS)).isoformat(), total=total,
                    currency=rng.choice(["CNY", "USD"]), customer_id=rng.choice(customers))
    history = []
    if rng.random() < 0.2:
        history.append(("order.created", dict(current, status="draft", confirmed_at=None)))
        current = dict(current, version=2)
    history.append(("order.placed", current))
    for _ in range(rng.randint(0, 3)):
        change = rng.choice(["paid", "cancelled", "moved", "redated"])
        current = dict(current, version=current["version"] + 1)
        if change == "paid":
            current.update(status="paid", paid_amount=current["total"])
        elif change == "cancelled":
            current.update(status="cancelled")
        elif change == "moved":
            owner, team = rng.choice(OWNERS)
            current.update(owner_id=owner, owner_team_id=team)
        else:
            current.update(confirmed_at=moment(rng.choice(DAYS), hour=23).isoformat())
        history.append((f"order.{change}", current))
    return history


def opportunity_history(rng, opportunity):
    """Created in qualify, maybe moved to propose, maybe won or lost, maybe reassigned."""
    owner, team = rng.choice(OWNERS)
    pipeline = rng.choice([PIPELINE, PIPELINE, OTHER_PIPELINE])
    created_at = moment(rng.choice(DAYS), hour=rng.randint(0, 23))
    current = opportunity(version=1, pipeline_id=pipeline, owner_id=owner, owner_team_id=team,
                          created_at=created_at.isoformat())
    current["stage_change"].update(pipeline_id=pipeline, changed_at=created_at.isoformat())
    history = [("opportunity.created", current)]
    stage, position = "qualify", 1
    for _ in range(rng.randint(0, 3)):
        step = rng.choice(["propose", "won", "lost", "reassigned"])
        current = dict(current, version=current["version"] + 1, stage_change=None)
        if step == "reassigned":
            owner, team = rng.choice(OWNERS)
            current.update(owner_id=owner, owner_team_id=team)
            history.append(("opportunity.updated", current))
            continue
        if current["status"] != "open":
            continue
        outcome = {"propose": "open", "won": "won", "lost": "lost"}[step]
        new_position = {"propose": 2, "won": 3, "lost": None}[step]
        changed_at = created_at + timedelta(days=rng.randint(0, 40), seconds=rng.randint(0, 86399))
        current.update(stage=step, stage_position=new_position, stage_outcome=outcome, status=outcome,
                       closed_at=None if outcome == "open" else changed_at.isoformat())
        current["stage_change"] = {
            "stage_change_id": str(uuid.uuid4()), "opportunity_id": current["id"], "pipeline_id": pipeline,
            "owner_id": current["owner_id"], "owner_team_id": current["owner_team_id"], "from_stage": stage,
            "to_stage": step, "to_stage_position": new_position, "to_outcome": outcome,
            "changed_at": changed_at.isoformat(), "seconds_in_previous_stage": rng.choice([None, 3600, 90061])}
        stage, position = step, new_position
        history.append(("opportunity.stage_changed", current))
    return history


def random_stream(seed, customer, order, opportunity, envelope):
    """Customers, orders and opportunities moving on, shuffled (so newer versions often arrive before
    older ones), with redeliveries of the same envelope, merges and an erasure among them."""
    rng = random.Random(seed)
    customers = [str(uuid.uuid4()) for _ in range(5)]
    events = [envelope("customer.created", customer(id=id_, region=rng.choice(["east", "west"])))
              for id_ in customers]
    # Customers moving region (or losing it): their orders' sales move with them, whenever the
    # change arrives relative to the orders.
    events += [envelope("customer.updated", customer(id=id_, version=version, region=rng.choice(["east", "west", None])))
               for id_ in rng.sample(customers, 3) for version in (2, 3)]
    for _ in range(14):
        events += [envelope(kind, data) for kind, data in order_history(rng, order, customers)]
    for _ in range(10):
        events += [envelope(kind, data) for kind, data in opportunity_history(rng, opportunity)]
    events += [envelope("customer.merged", {"source_id": customers[0], "target_id": customers[1]}),
               envelope("customer.merged", {"source_id": customers[1], "target_id": customers[2]}),
               envelope("customer.erased", {"customer_id": customers[3], "name": None})]
    rng.shuffle(events)
    for redelivered in rng.sample(events, 10):
        events.insert(rng.randrange(len(events) + 1), redelivered)
    return events


def apply_all(factory, events):
    for event in events:
        with factory.begin() as session:
            if event["type"] == "customer.erased":
                apply_erased(session, event)
            else:
                apply_event(session, event)


# --- the same reports from the facts --------------------------------------------------

class FromFacts(Reports):
    """The reports as they were computed before the rollups."""

    def _sales_by_day_from_rollup(self, *args):
        return [self._sales_by_day_from_orders(*args)]

    def _sales_by_owner_from_rollup(self, *args):
        return self._sales_by_owner_from_orders(*args)

    def _breakdowns(self, current, dimensions):
        return self._breakdowns_one_by_one(current, dimensions)

    def sales_funnel(self, filters=None):
        return funnel_from_facts(self, filters)


def funnel_from_facts(reports, filters):
    filters = load(FunnelFilters, filters or {})
    date_from, date_to = reports._range(filters)
    pipeline = str(filters["pipeline"])
    opportunity, change = OpportunityFact, StageChangeFact
    start, end = moment(date_from, 0), moment(date_to + timedelta(days=1), 0)

    def epoch(column):
        if reports.session.get_bind().dialect.name == "sqlite":
            return (func.julianday(column) - 2440587.5) * 86400
        return extract("epoch", column)

    def cohort(*columns):
        statement = select(*columns).where(opportunity.pipeline_id == pipeline, opportunity.created_at >= start,
                                           opportunity.created_at < end)
        return reports._scope(statement, opportunity, filters)

    by_status = {status: (count, cycle, closed) for status, count, cycle, closed in reports.session.execute(cohort(
        opportunity.status, func.count(), func.sum(epoch(opportunity.closed_at) - epoch(opportunity.created_at)),
        func.count(opportunity.closed_at)).group_by(opportunity.status))}
    won, lost = by_status.get("won", (0, None, 0)), by_status.get("lost", (0, None, 0))
    stages = reports.session.execute(select(change.to_stage, change.to_stage_position, change.to_outcome)
                                     .where(change.pipeline_id == pipeline).distinct()).all()
    stages.sort(key=lambda stage: (stage[1] is None, stage[1] or 0, stage[0]))
    reached = dict(reports.session.execute(
        cohort(opportunity.furthest_position, func.count()).group_by(opportunity.furthest_position)).all())
    entered_lost = dict(reports.session.execute(
        cohort(opportunity.stage, func.count()).where(opportunity.status == "lost").group_by(opportunity.stage)).all())
    time_in = {stage: (seconds, count) for stage, seconds, count in reports.session.execute(reports._scope(
        select(change.from_stage, func.sum(change.seconds_in_previous_stage),
               func.count(change.seconds_in_previous_stage))
        .where(change.pipeline_id == pipeline, change.from_stage.is_not(None),
               change.opportunity_created_at >= start, change.opportunity_created_at < end),
        change, filters).group_by(change.from_stage))}

    def entered(stage, position, outcome):
        if outcome == "lost":
            return entered_lost.get(stage, 0)
        if position is None:
            return 0
        return sum(count for at, count in reached.items() if at is not None and at >= position)

    rows = [{"stage": stage, "position": position, "outcome": outcome, "entered": entered(stage, position, outcome)}
            for stage, position, outcome in stages]
    forward = [row for row in rows if row["outcome"] in ("open", "won")]
    for row in rows:
        row["conversion_rate"] = None
        if row["outcome"] == "open":
            later = [other for other in forward if other["position"] is not None and row["position"] is not None
                     and other["position"] > row["position"]]
            if later:
                row["conversion_rate"] = percent(later[0]["entered"], row["entered"])
        seconds, count = time_in.get(row["stage"], (None, 0))
        row["average_days_in_stage"] = days(seconds, count)
    return {
        "pipeline": pipeline, "from": date_from.isoformat(), "to": date_to.isoformat(),
        "opportunities": sum(count for count, _, _ in by_status.values()),
        "open": by_status.get("open", (0, None, 0))[0], "won": won[0], "lost": lost[0],
        "win_rate": percent(won[0], won[0] + lost[0]),
        "average_sales_cycle_days": days(won[1], won[2]),
        "stages": rows,
    }


SALES_FILTERS = [
    {}, {"granularity": "day", "from": "2026-10-01", "to": "2026-11-30"}, {"granularity": "week"},
    {"granularity": "quarter", "from": "2025-01-01", "to": "2026-12-31"}, {"owner_id": ALICE}, {"team": "east"},
    {"team": "west", "granularity": "day"}, {"region": "east"}, {"from": "2026-11-02", "to": "2026-11-02"},
    {"region": "west", "granularity": "day"}, {"team": "east", "region": "east"}, {"owner_id": BOB, "region": "west"},
    {"team": "west", "region": "west", "granularity": "quarter"},
]
FUNNEL_FILTERS = [
    {"pipeline": PIPELINE}, {"pipeline": OTHER_PIPELINE},
    {"pipeline": PIPELINE, "from": "2025-01-01", "to": "2026-12-31"},
    {"pipeline": PIPELINE, "from": "2026-11-02", "to": "2026-11-29", "owner_id": BOB},
    {"pipeline": PIPELINE, "team": "east", "from": "2025-06-01"},
]


def assert_reports_match_the_facts(session, contexts):
    for context in contexts:
        for filters in SALES_FILTERS:
            assert (Reports(session, context, now=NOW).run("sales-by-period", filters)
                    == FromFacts(session, context, now=NOW).run("sales-by-period", filters)), (context.role, filters)
            # By owner takes the same filters but the owner and the granularity.
            by_owner = {name: value for name, value in filters.items() if name not in ("owner_id", "granularity")}
            assert (Reports(session, context, now=NOW).run("sales-by-owner", by_owner)
                    == FromFacts(session, context, now=NOW).run("sales-by-owner", by_owner)), (context.role, by_owner)
        for filters in ({}, {"region": "east"}, {"team": "west", "tier": "B"}):
            assert (Reports(session, context, now=NOW).run("customers-summary", filters)
                    == FromFacts(session, context, now=NOW).run("customers-summary", filters)), (context.role, filters)
        for filters in FUNNEL_FILTERS:
            assert (Reports(session, context, now=NOW).run("sales-funnel", filters)
                    == FromFacts(session, context, now=NOW).run("sales-funnel", filters)), (context.role, filters)


# --- the tests -----------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_any_stream_of_events_leaves_rollups_equal_to_the_facts(factory, seed, customer, order, opportunity,
                                                                 envelope, as_admin, as_alice, as_bob,
                                                                 as_east_manager):
    apply_all(factory, random_stream(seed, customer, order, opportunity, envelope))
    with factory() as session:
        assert rollups.differences(session) == NO_DIFFERENCES
        # Opportunities changed status and orders moved, yet no emptied row stays behind. (A stage
        # time row counts only the changes that know their time, so one can be zero from the start.)
        for rollup in rollups.ROLLUPS:
            if rollup.table == "funnel_stage_time_rollups":
                continue
            assert session.execute(text(
                f"SELECT count(*) FROM {rollup.table} WHERE {rollup.counters[0][0]} = 0")).scalar() == 0, rollup.table
        # Something was counted, or the comparison would prove little.
        assert session.execute(select(func.sum(SalesDayRollup.orders))).scalar() > 0
        funnel = Reports(session, as_admin, now=NOW).run("sales-funnel", {"pipeline": PIPELINE, "from": "2025-01-01"})
        assert funnel["opportunities"] > 0 and len(funnel["stages"]) > 1
        assert_reports_match_the_facts(session, (as_admin, as_alice, as_bob, as_east_manager))


def test_a_cancelled_or_moved_order_leaves_its_old_row_and_joins_its_new_one(factory, order, envelope):
    placed = order(version=1, total="100.00", owner_id=ALICE, owner_team_id="east")
    apply_all(factory, [envelope("order.placed", placed),
                        envelope("order.placed", dict(order(version=1, total="5.00"), owner_id=ALICE)),
                        envelope("order.updated", dict(placed, version=2, owner_id=BOB, owner_team_id="west")),
                        envelope("order.placed", placed)])  # late: version 1 after version 2, changes nothing

    def rows():
        with factory() as session:
            return {(row.owner_id, row.orders, str(row.revenue)) for row in session.execute(
                select(SalesDayRollup.owner_id, SalesDayRollup.orders, SalesDayRollup.revenue))}

    assert rows() == {(ALICE, 1, "5.00"), (BOB, 1, "100.00")}
    apply_all(factory, [envelope("order.cancelled", dict(placed, version=3, owner_id=BOB, owner_team_id="west",
                                                         status="cancelled"))])
    # The row no order counts in any more is gone, not left at zero for every report to read.
    assert rows() == {(ALICE, 1, "5.00")}


def test_recompute_repairs_a_rollup_and_facts_written_by_hand_are_counted(factory, order, envelope):
    apply_all(factory, [envelope("order.placed", order())])
    with factory.begin() as session:
        session.execute(update(SalesDayRollup).values(orders=7))
        # An operator's fix straight in the facts is followed too.
        session.execute(update(OrderFact).values(total=1))
    with factory.begin() as session:
        assert rollups.differences(session)["sales_day_rollups"] != []
        rollups.recompute(session)
    with factory() as session:
        assert rollups.differences(session) == NO_DIFFERENCES
        assert session.execute(select(SalesDayRollup.orders, SalesDayRollup.revenue)).one() == (1, 1)


@pytest.fixture
def race_factory():
    """Sessions on a migrated throwaway PostgreSQL database, for two consumers racing."""
    with postgres_database("crm_test_rollups_race") as url:
        upgrade("reporting.migrations", url)
        engine = make_engine(url)
        try:
            yield make_session_factory(engine)
        finally:
            engine.dispose()


def wait_until_blocked(session):
    """Until another connection waits for a lock in this database (a condition, not a time)."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                 "AND wait_event_type = 'Lock'")
    with eventlet.Timeout(10):
        while session.execute(query).scalar() == 0:
            session.rollback()
            eventlet.sleep(0.01)


@pytest.mark.parametrize("first, second", [(2, 3), (3, 2)])
def test_two_consumers_writing_one_order_at_once_lose_nothing_on_postgresql(first, second, order, envelope,
                                                                            race_factory):
    """Consumer A holds version ``first`` uncommitted while B applies ``second``: B waits for A's row,
    then sees A's version as the old one (newer wins), so no contribution is subtracted twice."""
    factory = race_factory
    placed = order(version=1, owner_id=ALICE, owner_team_id="east", total="100.00")
    other = order(version=1, owner_id=BOB, owner_team_id="west", total="7.00", id=str(uuid.uuid4()))
    apply_all(factory, [envelope("order.placed", placed)])
    versions = {2: dict(placed, version=2, owner_id=BOB, owner_team_id="west"),
                3: dict(placed, version=3, status="cancelled")}
    a, watcher = factory(), factory()
    apply_event(a, envelope("order.updated", versions[first]))
    apply_event(a, envelope("order.placed", other))  # holds BOB's rollup row too
    b = eventlet.spawn(apply_all, factory, [envelope("order.updated", versions[second]),
                                            envelope("order.placed", dict(other, version=2))])
    wait_until_blocked(watcher)
    a.commit()
    b.wait()
    with factory() as session:
        assert rollups.differences(session) == NO_DIFFERENCES
        assert session.get(OrderFact, placed["id"]).version == 3
        assert session.execute(select(func.sum(SalesDayRollup.orders))).scalar() == 1  # only "other"
    a.close()
    watcher.close()


def test_an_order_added_while_another_empties_its_rollup_row_is_counted_on_postgresql(order, envelope,
                                                                                      race_factory):
    """Consumer A cancels the only order of a rollup row: the row reaches zero and A's trigger deletes
    it, uncommitted. Consumer B places another order with the same key meanwhile: its upsert waits
    for A's lock, and once A commits the deletion it inserts the row again (ON CONFLICT re-checks).
    Nothing is lost and no zero row stays."""
    factory = race_factory
    first = order(version=1, owner_id=ALICE, owner_team_id="east", total="100.00")
    second = order(version=1, owner_id=ALICE, owner_team_id="east", total="7.00", id=str(uuid.uuid4()))
    apply_all(factory, [envelope("order.placed", first)])
    a, watcher = factory(), factory()
    apply_event(a, envelope("order.cancelled", dict(first, version=2, status="cancelled")))
    assert a.execute(select(func.count()).select_from(SalesDayRollup)).scalar() == 0  # deleted, uncommitted
    b = eventlet.spawn(apply_all, factory, [envelope("order.placed", second)])
    wait_until_blocked(watcher)
    a.commit()
    b.wait()
    with factory() as session:
        assert rollups.differences(session) == NO_DIFFERENCES
        assert session.execute(select(SalesDayRollup.orders, SalesDayRollup.revenue)).all() == [
            (1, Decimal("7.00"))]
    a.close()
    watcher.close()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_migration_fills_the_rollups_from_the_facts_already_held(database, tmp_path):
    """Facts written before 0004 are summed into the new rollups, orders take their customer's
    region (0007); later writes are followed."""
    def check(url):
        upgrade("reporting.migrations", url, revision="0003")
        engine = make_engine(url)
        try:
            with engine.begin() as connection:
                connection.execute(text(
                    "INSERT INTO order_facts (order_id, customer_id, owner_id, owner_team_id, status, counted, currency, "
                    "total, paid_amount, placed_on, version) VALUES "
                    "('o1', 'c1', 'u1', 'east', 'paid', TRUE, 'CNY', 10.50, 10.50, '2026-11-02', 1), "
                    "('o2', 'c1', NULL, NULL, 'cancelled', FALSE, 'CNY', 99.00, 0, '2026-11-02', 1)"))
                connection.execute(text(
                    "INSERT INTO customer_facts (customer_id, name, lifecycle_stage, region, created_at, created_on, "
                    "deleted, version) VALUES ('c1', 'Acme', 'lead', 'east', '2026-11-01 09:00:00', '2026-11-01', "
                    "FALSE, 1)"))
            upgrade("reporting.migrations", url)
            with make_session_factory(engine).begin() as session:
                assert rollups.differences(session) == NO_DIFFERENCES
                assert session.execute(select(SalesDayRollup.owner_id, SalesDayRollup.orders)).all() == [("u1", 1)]
                assert session.execute(select(SalesDayRegionRollup.owner_team_id, SalesDayRegionRollup.region,
                                              SalesDayRegionRollup.orders)).all() == [("east", "east", 1)]
                # The customer moves region: its sales move with it.
                session.execute(update(CustomerFact).where(CustomerFact.customer_id == "c1").values(region="west"))
                assert session.execute(select(SalesDayRegionRollup.region)).scalars().all() == ["west"]
                session.execute(update(OrderFact).where(OrderFact.order_id == "o2").values(counted=True))
                assert rollups.differences(session) == NO_DIFFERENCES
        finally:
            engine.dispose()

    if database == "sqlite":
        check(f"sqlite:///{tmp_path}/reporting.db")
    else:
        with postgres_database("crm_test_rollups_migration") as url:
            check(url)
