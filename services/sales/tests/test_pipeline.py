"""Pipelines and opportunities (sales.pipeline), and the customer merge seen from sales."""
import json
import uuid
from datetime import timedelta

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select

from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed, VersionMismatch
from crm_common.outbox import outbox_table
from crm_common.testing_cast import ALICE, BOB

from sales.domain import CustomerReplicaFeed
from sales.models import CustomerReplica, Opportunity
from sales.pipeline import DEFAULT_STAGES, Opportunities, Pipelines, default_pipeline
from sales.service import SalesService

STAGE_KEYS = [key for key, *_ in DEFAULT_STAGES]


@pytest.fixture
def known_customer(session):
    """A customer the sales replica knows (as customer.created would leave it)."""
    def make(name="Acme Ltd", deleted=False, owner_id=ALICE, owner_team_id="east"):
        row = CustomerReplica(id=str(uuid.uuid4()), name=name, owner_id=owner_id, owner_team_id=owner_team_id,
                              deleted=deleted, version=1)
        session.add(row)
        session.flush()
        return row.id
    return make


@pytest.fixture
def new_opportunity(session, known_customer):
    def make(context, **fields):
        # Sales users sell to their own customers (admins and the system to anyone's).
        owner = (context.user_id, context.team_id) if context.role == "sales" else (ALICE, "east")
        data = {"customer_id": known_customer(owner_id=owner[0], owner_team_id=owner[1]),
                "title": "500 licences", "amount": "1200.00",
                "currency": "CNY", **fields}
        return Opportunities(session, context).create(data, owner_team_id=context.team_id)
    return make


def events(session, event_type=None):
    payloads = [json.loads(row.payload) for row in session.execute(
        select(outbox_table.c.payload).order_by(outbox_table.c.created_at))]
    return [p for p in payloads if event_type is None or p["type"] == event_type]


def age_stage(session, opportunity_id, seconds):
    """Pretend the opportunity entered its stage ``seconds`` ago (behind the ORM: no new version)."""
    table = Opportunity.__table__
    entered = session.execute(select(table.c.stage_entered_at).where(table.c.id == opportunity_id)).scalar_one()
    session.execute(table.update().where(table.c.id == opportunity_id)
                    .values(stage_entered_at=entered - timedelta(seconds=seconds)))
    session.expire_all()


# --- pipelines ---------------------------------------------------------------------

def test_the_default_pipeline_exists_once_with_its_stages_in_order(session, as_viewer):
    first = default_pipeline(session)
    assert default_pipeline(session).id == first.id
    listed = Pipelines(session, as_viewer).list()["items"]
    assert len(listed) == 1 and listed[0]["is_default"] is True
    assert [(s["key"], s["probability"], s["outcome"]) for s in listed[0]["stages"]] == [
        ("qualification", 10, "open"), ("needs_analysis", 25, "open"), ("proposal", 50, "open"),
        ("negotiation", 75, "open"), ("won", 100, "won"), ("lost", 0, "lost")]


def pipeline_body(name="Renewals", **overrides):
    return {"name": name, "stages": [
        {"key": "contacted", "name": "Contacted", "probability": 30},
        {"key": "renewed", "name": "Renewed", "probability": 100, "outcome": "won"},
        {"key": "churned", "name": "Churned", "probability": 0, "outcome": "lost"},
    ], **overrides}


def test_admins_create_pipelines_and_add_stages_at_a_position(session, as_admin):
    pipelines = Pipelines(session, as_admin)
    created = pipelines.create(pipeline_body())
    assert [s["key"] for s in created["stages"]] == ["contacted", "renewed", "churned"]
    assert created["is_default"] is False
    at_start = pipelines.add_stage(created["id"], {"key": "lead", "name": "Lead", "probability": 5, "position": 0})
    assert [s["key"] for s in at_start["stages"]] == ["lead", "contacted", "renewed", "churned"]
    # Without a position a stage goes after the last open one, before won and lost.
    appended = pipelines.add_stage(created["id"], {"key": "quoted", "name": "Quoted", "probability": 60})
    assert [(s["key"], s["position"]) for s in appended["stages"]] == [
        ("lead", 0), ("contacted", 1), ("quoted", 2), ("renewed", 3), ("churned", 4)]
    assert pipelines.get(created["id"]) == appended


@pytest.mark.parametrize("stages, field", [
    ([{"key": "a", "name": "A", "probability": 10}, {"key": "b", "name": "B", "probability": 100, "outcome": "won"},
      {"key": "c", "name": "C", "probability": 100, "outcome": "won"}], "stages"),
    ([{"key": "a", "name": "A", "probability": 10}, {"key": "a", "name": "B", "probability": 100, "outcome": "won"},
      {"key": "c", "name": "C", "probability": 0, "outcome": "lost"}], "stages"),
    ([{"key": "w", "name": "W", "probability": 100, "outcome": "won"}, {"key": "l", "name": "L", "probability": 0,
      "outcome": "lost"}, {"key": "x", "name": "X", "probability": 0, "outcome": "lost"}], "stages"),
])
def test_a_pipeline_needs_one_won_one_lost_and_unique_keys(session, as_admin, stages, field):
    with pytest.raises(ValidationFailed) as caught:
        Pipelines(session, as_admin).create({"name": "Broken", "stages": stages})
    assert field in caught.value.errors


def test_stage_probabilities_are_percentages_and_keys_are_simple(session, as_admin):
    body = pipeline_body()
    body["stages"][0] = {"key": "Contacted Now", "name": "X", "probability": 101}
    with pytest.raises(ValidationFailed) as caught:
        Pipelines(session, as_admin).create(body)
    assert set(caught.value.errors["stages"][0]) == {"key", "probability"}


def test_only_admins_shape_pipelines_and_names_and_keys_are_unique(session, as_admin, as_east_manager):
    with pytest.raises(Forbidden):
        Pipelines(session, as_east_manager).create(pipeline_body())
    created = Pipelines(session, as_admin).create(pipeline_body())
    with pytest.raises(Forbidden):
        Pipelines(session, as_east_manager).add_stage(created["id"], {"key": "x", "name": "X", "probability": 1})
    with pytest.raises(Conflict) as caught:
        Pipelines(session, as_admin).create(pipeline_body())
    assert "name" in caught.value.errors
    with pytest.raises(Conflict) as caught:
        Pipelines(session, as_admin).add_stage(created["id"], {"key": "contacted", "name": "X", "probability": 1})
    assert "key" in caught.value.errors
    with pytest.raises(ValidationFailed) as caught:
        Pipelines(session, as_admin).add_stage(created["id"], {"key": "x", "name": "X", "probability": 1,
                                                               "position": 9})
    assert "position" in caught.value.errors
    with pytest.raises(NotFound):
        Pipelines(session, as_admin).get(str(uuid.uuid4()))


# --- opportunities -----------------------------------------------------------------

def test_a_new_opportunity_starts_in_the_first_stage_with_its_probability(session, as_alice, new_opportunity):
    created = new_opportunity(as_alice, expected_close_date="2026-03-31", source="web", next_step="Demo")
    assert (created["stage"], created["probability"], created["probability_overridden"]) == (
        "qualification", 10, False)
    assert created["pipeline_id"] == default_pipeline(session).id
    assert (created["amount"], created["status"], created["owner_id"], created["owner_team_id"]) == (
        "1200.00", "open", ALICE, "east")
    [event] = events(session, "opportunity.created")
    assert event["data"]["amount"] == "1200.00" and event["data"]["customer_id"] == created["customer_id"]
    assert event["data"]["expected_close_date"] == "2026-03-31" and event["data"]["stage"] == "qualification"
    history = Opportunities(session, as_alice).history(created["id"])["items"]
    assert [(h["from_stage"], h["to_stage"]) for h in history] == [(None, "qualification")]


def test_unknown_or_deleted_customers_and_bad_input_name_the_field(session, as_alice, known_customer):
    opportunities = Opportunities(session, as_alice)
    base = {"title": "T", "amount": "10.00", "currency": "CNY"}
    for customer_id in (str(uuid.uuid4()), known_customer(deleted=True)):
        with pytest.raises(ValidationFailed) as caught:
            opportunities.create({**base, "customer_id": customer_id})
        assert "customer_id" in caught.value.errors
    cases = [({"amount": "-1"}, "amount"), ({"amount": 12.345}, "amount"), ({"currency": "yuan"}, "currency"),
             ({"amount": "10.50", "currency": "JPY"}, "amount"), ({"probability": 150}, "probability"),
             ({"stage": "won"}, "stage"), ({"stage": "nope"}, "stage"), ({"pipeline_id": str(uuid.uuid4())},
                                                                        "pipeline_id"),
             ({"owner_id": BOB}, "owner_id"), ({"colour": "red"}, "colour")]
    for change, field in cases:
        with pytest.raises(ValidationFailed) as caught:
            opportunities.create({**base, "customer_id": known_customer(), **change})
        assert field in caught.value.errors, change
    assert session.execute(select(Opportunity)).first() is None


def test_read_only_roles_never_write(session, as_viewer, known_customer):
    with pytest.raises(Forbidden):
        Opportunities(session, as_viewer).create(
            {"customer_id": known_customer(), "title": "T", "amount": "1", "currency": "CNY"})


def test_stage_moves_keep_history_time_in_stage_and_default_probabilities(session, as_alice, new_opportunity):
    opportunities = Opportunities(session, as_alice)
    created = new_opportunity(as_alice)
    age_stage(session, created["id"], 3600)
    moved = opportunities.move(created["id"], {"stage": "proposal", "note": "Sent the deck"})
    assert (moved["stage"], moved["probability"], moved["version"]) == ("proposal", 50, 2)
    history = opportunities.history(created["id"])["items"]
    assert [(h["from_stage"], h["to_stage"]) for h in history] == [("qualification", "proposal"),
                                                                   (None, "qualification")]
    assert 3600 <= history[0]["seconds_in_previous_stage"] < 3700
    assert history[0]["note"] == "Sent the deck" and history[0]["changed_by"] == ALICE
    [event] = events(session, "opportunity.stage_changed")
    assert (event["data"]["from_stage"], event["data"]["to_stage"]) == ("qualification", "proposal")
    assert event["data"]["seconds_in_previous_stage"] == history[0]["seconds_in_previous_stage"]
    with pytest.raises(Conflict):
        opportunities.move(created["id"], {"stage": "proposal"})
    with pytest.raises(ValidationFailed) as caught:
        opportunities.move(created["id"], {"stage": "signed"})
    assert "stage" in caught.value.errors
    with pytest.raises(VersionMismatch):
        opportunities.move(created["id"], {"stage": "negotiation"}, expected_version=1)


def test_an_overridden_probability_sticks_across_moves_until_cleared(session, as_alice, new_opportunity):
    opportunities = Opportunities(session, as_alice)
    created = new_opportunity(as_alice, probability=35)
    assert (created["probability"], created["probability_overridden"]) == (35, True)
    assert opportunities.move(created["id"], {"stage": "negotiation"})["probability"] == 35
    cleared = opportunities.update(created["id"], {"probability": None})
    assert (cleared["probability"], cleared["probability_overridden"]) == (75, False)
    assert opportunities.move(created["id"], {"stage": "proposal"})["probability"] == 50


def test_lost_needs_a_reason_and_closes_the_opportunity(session, as_alice, new_opportunity):
    opportunities = Opportunities(session, as_alice)
    created = new_opportunity(as_alice)
    with pytest.raises(ValidationFailed) as caught:
        opportunities.move(created["id"], {"stage": "lost"})
    assert list(caught.value.errors) == ["lost_reason"]
    with pytest.raises(ValidationFailed) as caught:
        opportunities.move(created["id"], {"stage": "proposal", "lost_reason": "?"})
    assert list(caught.value.errors) == ["lost_reason"]
    lost = opportunities.move(created["id"], {"stage": "lost", "lost_reason": "Price"})
    assert (lost["status"], lost["lost_reason"], lost["probability"]) == ("lost", "Price", 0)
    assert lost["closed_at"] is not None
    [event] = events(session, "opportunity.lost")
    assert (event["data"]["lost_reason"], event["data"]["amount"], event["data"]["owner_team_id"]) == (
        "Price", "1200.00", "east")
    with pytest.raises(Conflict) as refused:
        opportunities.update(created["id"], {"amount": "99.00"})
    assert "lost" in refused.value.detail


def test_won_closes_and_only_a_manager_or_admin_reopens(session, as_alice, as_east_manager, new_opportunity):
    created = new_opportunity(as_alice)
    won = Opportunities(session, as_alice).move(created["id"], {"stage": "won"})
    assert (won["status"], won["probability"]) == ("won", 100) and won["closed_at"]
    assert [e["type"] for e in events(session)][-2:] == ["opportunity.stage_changed", "opportunity.won"]
    with pytest.raises(Forbidden):
        Opportunities(session, as_alice).move(created["id"], {"stage": "negotiation"})
    reopened = Opportunities(session, as_east_manager).move(created["id"], {"stage": "negotiation",
                                                                            "note": "Customer came back"})
    assert (reopened["status"], reopened["closed_at"], reopened["probability"]) == ("open", None, 75)
    assert events(session, "opportunity.stage_changed")[-1]["data"]["reopened"] is True


def test_patch_honours_the_version_and_never_the_stage(session, as_alice, new_opportunity):
    opportunities = Opportunities(session, as_alice)
    created = new_opportunity(as_alice)
    changed = opportunities.update(created["id"], {"title": "600 licences", "amount": "1500.50"}, 1)
    assert (changed["title"], changed["amount"], changed["version"]) == ("600 licences", "1500.50", 2)
    with pytest.raises(VersionMismatch):
        opportunities.update(created["id"], {"title": "stale"}, 1)
    with pytest.raises(ValidationFailed) as caught:
        opportunities.update(created["id"], {"stage": "won"})
    assert "stage" in caught.value.errors
    with pytest.raises(ValidationFailed) as caught:
        opportunities.update(created["id"], {"currency": "JPY"})
    assert "amount" in caught.value.errors
    [event] = events(session, "opportunity.updated")
    assert event["data"]["changes"]["amount"] == {"old": "1200.00", "new": "1500.50"}


def test_visibility_by_role(session, as_alice, as_bob, as_east_manager, as_viewer, new_opportunity):
    mine = new_opportunity(as_alice)
    bobs = new_opportunity(as_bob)
    with pytest.raises(NotFound):
        Opportunities(session, as_alice).get(bobs["id"])
    with pytest.raises(NotFound):
        Opportunities(session, as_alice).move(bobs["id"], {"stage": "proposal"})
    assert [o["id"] for o in Opportunities(session, as_alice).list()["items"]] == [mine["id"]]
    assert [o["id"] for o in Opportunities(session, as_east_manager).list()["items"]] == [mine["id"]]
    assert {o["id"] for o in Opportunities(session, as_viewer).list()["items"]} == {mine["id"], bobs["id"]}


def test_a_manager_gives_opportunities_within_the_team(session, as_east_manager, known_customer):
    opportunities = Opportunities(session, as_east_manager)
    base = {"customer_id": known_customer(), "title": "T", "amount": "1.00", "currency": "CNY"}
    given = opportunities.create({**base, "owner_id": ALICE}, owner_team_id="east")
    assert (given["owner_id"], given["owner_team_id"]) == (ALICE, "east")
    with pytest.raises(ValidationFailed) as caught:
        opportunities.create({**base, "owner_id": BOB}, owner_team_id="west")
    assert "owner_id" in caught.value.errors


def test_list_filters_sorts_and_pages(session, as_alice, new_opportunity):
    opportunities = Opportunities(session, as_alice)
    small = new_opportunity(as_alice, amount="100.00", expected_close_date="2026-02-01")
    big = new_opportunity(as_alice, amount="9000.00", expected_close_date="2026-06-01")
    undated = new_opportunity(as_alice, amount="500.00")
    opportunities.move(big["id"], {"stage": "won"})

    def ids(**query):
        sort = query.pop("sort", None)
        return [o["id"] for o in opportunities.list(query, sort=sort)["items"]]

    assert ids(sort="amount") == [small["id"], undated["id"], big["id"]]
    assert ids(sort="-amount") == [big["id"], undated["id"], small["id"]]
    assert ids(sort="expected_close_date") == [small["id"], big["id"], undated["id"]]
    assert ids(status="closed") == ids(status="won") == [big["id"]]
    assert set(ids(status="open")) == {small["id"], undated["id"]}
    assert ids(stage="won") == [big["id"]]
    assert ids(amount_min="200", amount_max="1000") == [undated["id"]]
    assert ids(close_from="2026-01-01", close_to="2026-03-01") == [small["id"]]
    assert ids(customer_id=small["customer_id"]) == [small["id"]]
    assert ids(owner_id=BOB) == []
    paged, cursor = [], None
    while True:
        page = opportunities.list({}, limit=1, cursor=cursor, sort="-expected_close_date")
        paged += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == [undated["id"], big["id"], small["id"]]
    for query, field in (({"status": "stale"}, "status"), ({"close_from": "2026-05-01", "close_to": "2026-01-01"},
                                                           "close_to"),
                         ({"amount_min": "5", "amount_max": "1"}, "amount_max")):
        with pytest.raises(ValidationFailed) as caught:
            opportunities.list(query)
        assert field in caught.value.errors
    with pytest.raises(ValidationFailed) as caught:
        opportunities.list({}, sort="title")
    assert "sort" in caught.value.errors


def test_the_board_groups_visible_open_opportunities_by_stage(session, as_alice, as_bob, new_opportunity):
    pipeline_id = default_pipeline(session).id
    new_opportunity(as_alice, amount="1000.00")
    new_opportunity(as_alice, amount="200.50")
    new_opportunity(as_alice, amount="99.00", currency="USD")
    late = new_opportunity(as_alice, amount="5000.00", stage="proposal")
    new_opportunity(as_bob, amount="7777.00")
    closed = new_opportunity(as_alice, amount="1.00")
    Opportunities(session, as_alice).move(closed["id"], {"stage": "lost", "lost_reason": "Budget"})

    board = Pipelines(session, as_alice).board(pipeline_id, {"per_stage": 2})
    assert [column["stage"]["key"] for column in board["stages"]] == STAGE_KEYS[:4]
    first = board["stages"][0]
    assert first["count"] == 3 and len(first["opportunities"]) == 2
    assert first["totals"] == {"CNY": "1200.50", "USD": "99.00"}
    proposal = board["stages"][2]
    assert (proposal["count"], proposal["totals"], [o["id"] for o in proposal["opportunities"]]) == (
        1, {"CNY": "5000.00"}, [late["id"]])
    assert board["stages"][3] == {**board["stages"][3], "count": 0, "totals": {}, "opportunities": []}
    with pytest.raises(ValidationFailed) as caught:
        Pipelines(session, as_alice).board(pipeline_id, {"per_stage": "lots"})
    assert "per_stage" in caught.value.errors


# --- through the service -------------------------------------------------------------

def test_entrypoints_use_the_callers_context(session, as_alice, as_admin, known_customer):
    service = worker_factory(SalesService, db=session, context=as_alice)
    pipeline = service.list_pipelines()["items"][0]
    assert service.get_pipeline(pipeline["id"]) == pipeline
    created = service.create_opportunity({"customer_id": known_customer(), "title": "T", "amount": "5",
                                          "currency": "CNY"}, "east")
    assert service.get_opportunity(created["id"])["owner_id"] == ALICE
    assert service.update_opportunity(created["id"], {"next_step": "Call"}, 1)["version"] == 2
    assert service.move_opportunity(created["id"], {"stage": "proposal"}, 2)["stage"] == "proposal"
    assert len(service.opportunity_history(created["id"])["items"]) == 2
    assert service.list_opportunities({"stage": "proposal"})["items"][0]["id"] == created["id"]
    assert service.pipeline_board(pipeline["id"])["stages"][2]["count"] == 1
    admin = worker_factory(SalesService, db=session, context=as_admin)
    made = admin.create_pipeline(pipeline_body())
    assert len(admin.add_pipeline_stage(made["id"], {"key": "x", "name": "X", "probability": 1})["stages"]) == 4


def test_a_customer_merge_moves_the_sales_records_to_the_target(session, as_alice, new_opportunity,
                                                                known_customer, envelope):
    source = new_opportunity(as_alice)
    other = new_opportunity(as_alice)
    target_id = known_customer(name="Acme Group")
    merged = envelope("customer.merged", {"target_id": target_id, "source_id": source["customer_id"],
                                          "target_version": 3})
    service = worker_factory(SalesService, db=session, context=as_alice)
    service.on_customer_merged(merged)
    assert CustomerReplicaFeed(session).apply_merged(dict(merged)) == 0  # redelivered: applied once
    session.expire_all()
    moved = Opportunities(session, as_alice).get(source["id"])
    assert (moved["customer_id"], moved["version"]) == (target_id, 2)
    assert Opportunities(session, as_alice).get(other["id"])["customer_id"] == other["customer_id"]
    with pytest.raises(ValidationFailed):
        CustomerReplicaFeed(session).apply_merged(envelope("customer.merged", {"source_id": "x"}))
