"""The sales service's business counters move when the fact commits, and only then."""
from prometheus_client import REGISTRY

from sales.pipeline import Opportunities

# Fixtures of the domain tests, reused here.
from test_contracts import TODAY, alices, approved, contracts, customers, store  # noqa: F401
from test_orders import customer_id, order, pay  # noqa: F401
from test_pipeline import known_customer, new_opportunity  # noqa: F401


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0


def test_orders_placed_and_revenue_count_the_confirmed_order_by_currency(session, as_alice, order):
    placed, revenue = sample("crm_orders_placed_total", currency="CNY"), sample("crm_order_revenue_total",
                                                                               currency="CNY")
    session.commit()  # the fixture confirmed a 113.00 CNY order
    assert sample("crm_orders_placed_total", currency="CNY") == placed + 1
    assert sample("crm_order_revenue_total", currency="CNY") == revenue + 113


def test_payments_count_number_and_amount_and_a_rolled_back_one_counts_nothing(session, as_alice, order):
    session.commit()
    count, amount = sample("crm_payments_received_total", currency="CNY"), sample("crm_payment_amount_total",
                                                                                 currency="CNY")
    pay(session, as_alice, order["id"], "50.00")
    session.rollback()
    assert sample("crm_payments_received_total", currency="CNY") == count
    pay(session, as_alice, order["id"], "50.50")
    session.commit()
    assert sample("crm_payments_received_total", currency="CNY") == count + 1
    assert sample("crm_payment_amount_total", currency="CNY") == amount + 50.5


def test_opportunities_created_and_stage_changes_by_outcome(session, as_alice, new_opportunity):
    created = sample("crm_opportunities_created_total")
    moved_open, won = (sample("crm_opportunity_stage_changes_total", outcome=o) for o in ("open", "won"))
    opportunity = new_opportunity(as_alice)
    opportunities = Opportunities(session, as_alice)
    opportunities.move(opportunity["id"], {"stage": "proposal"})
    opportunities.move(opportunity["id"], {"stage": "won"})
    session.commit()
    assert sample("crm_opportunities_created_total") == created + 1
    assert sample("crm_opportunity_stage_changes_total", outcome="open") == moved_open + 1
    assert sample("crm_opportunity_stage_changes_total", outcome="won") == won + 1


def test_contracts_signed(session, contracts, as_alice, as_east_manager, alices):
    approved(contracts, as_alice, as_east_manager, alices["id"])
    before = sample("crm_contracts_signed_total")
    contracts(as_alice).sign(alices["id"], today=TODAY)
    session.commit()
    assert sample("crm_contracts_signed_total") == before + 1
