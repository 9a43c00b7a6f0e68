"""reporting.replay: an archive of events, replayed in batches, leaves the read models exactly as
delivering the same events one at a time does; a second replay changes nothing."""
import json

import pytest
from sqlalchemy import create_engine, func, select, text

from crm_common.consumer import processed_events_table
from crm_common.db import make_session_factory

from reporting import replay
from reporting.ingest import apply_event
from reporting.models import (
    ContractFact, CustomerFact, FollowupFact, OpportunityFact, OrderFact, OrderLineFact, StageChangeFact,
)

FACTS = (CustomerFact, OrderFact, OrderLineFact, OpportunityFact, StageChangeFact, FollowupFact, ContractFact)
# Columns stamped with the time of writing, which differ between any two runs.
STAMPS = {"refreshed_at"}


@pytest.fixture
def archive(customer, order, opportunity, contract, followup, envelope):
    """A stream as a live system produces it: records created, then moved on (newer versions of one
    record in a row, so batches must split), an old version arriving late, one customer deleted."""
    customers = [customer(id=f"00000000-0000-4000-8000-{n:012d}") for n in range(6)]
    events = [envelope("customer.created", data) for data in customers]
    orders = [order(version=1, customer_id=customers[n % 6]["id"]) for n in range(8)]
    events += [envelope("order.placed", data) for data in orders]
    events += [envelope("order.paid", {**data, "version": 2, "status": "paid", "paid_amount": data["total"]})
               for data in orders[:5]]
    events += [envelope("order.fulfilled", {**orders[0], "version": 3, "status": "fulfilled"})]
    events += [envelope("order.placed", orders[1])]  # late: version 1 after version 2
    deal = opportunity(customer_id=customers[0]["id"])
    events += [envelope("opportunity.created", deal),
               envelope("opportunity.stage_changed", opportunity(
                   id=deal["id"], customer_id=deal["customer_id"], version=2, stage="propose", position=2,
                   from_stage="qualify"))]
    events += [envelope("followup.logged", followup(customer_id=customers[n]["id"])) for n in range(3)]
    events += [envelope("contract.signed", contract(customer_id=customers[2]["id"]))]
    events += [envelope("customer.deleted", {**customers[5], "version": 2})]
    events += [envelope("customer.updated", {**customers[1], "version": 2, "tier": "A"})]
    return events


def write(path, events):
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return str(path)


def facts(url):
    """Every fact row, without the write-time stamps, per table."""
    engine = create_engine(url)
    with engine.connect() as connection:
        tables = {}
        for model in FACTS:
            columns = [column for column in model.__table__.columns if column.name not in STAMPS]
            rows = connection.execute(select(*columns)).all()
            tables[model.__tablename__] = sorted(tuple(str(value) for value in row) for row in rows)
    engine.dispose()
    return tables


def delivered_one_by_one(url, events):
    replay.upgrade("reporting.migrations", url)
    engine = create_engine(url)
    Session = make_session_factory(engine)
    for event in events:
        with Session.begin() as session:
            apply_event(session, event)
    engine.dispose()


def test_a_replay_in_batches_writes_what_live_delivery_writes(tmp_path, archive):
    live, replayed = f"sqlite:///{tmp_path / 'live.db'}", f"sqlite:///{tmp_path / 'replayed.db'}"
    delivered_one_by_one(live, archive)
    # Batches of 4: every batch boundary (kind change, repeated record, full batch) is crossed.
    applied, skipped = replay.replay(replayed, [write(tmp_path / "events.jsonl", archive)], batch_size=4)
    assert (applied, skipped) == (len(archive), 0)
    expected = facts(live)
    assert expected["order_facts"] and expected["order_line_facts"] and expected["stage_change_facts"]
    assert facts(replayed) == expected
    engine = create_engine(replayed)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(processed_events_table)).scalar() == len(archive)
        # The late version 1 did not undo the payment.
        paid = connection.execute(text("SELECT status FROM order_facts WHERE order_id = :id"),
                                  {"id": archive[6 + 1]["data"]["id"]}).scalar()
    engine.dispose()
    assert paid == "paid"


def test_replaying_the_same_archive_twice_changes_nothing(tmp_path, archive):
    url = f"sqlite:///{tmp_path / 'reporting.db'}"
    path = write(tmp_path / "events.jsonl", archive)
    replay.replay(url, [path])
    once = facts(url)
    assert replay.replay(url, [path]) == (0, len(archive))
    assert facts(url) == once


def test_an_event_reporting_cannot_read_stops_the_replay_naming_it(tmp_path, archive, capsys):
    url = f"sqlite:///{tmp_path / 'reporting.db'}"
    broken = [*archive[:3], {**archive[3], "data": {**archive[3]["data"], "version": "two"}}]
    with pytest.raises(SystemExit) as stopped:
        replay.main([write(tmp_path / "events.jsonl", broken), "--db-url", url])
    assert "version" in str(stopped.value)
