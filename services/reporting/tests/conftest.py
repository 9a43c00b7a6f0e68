import uuid
from datetime import datetime, timezone

import pytest

from crm_common.db import make_session_factory
from crm_common.testing import memory_session
from crm_common.testing_cast import ALICE, BOB, MANAGER, ADMIN, as_alice, as_bob, as_east_manager, as_admin  # noqa: F401

from reporting.models import Base


@pytest.fixture
def session():
    session = memory_session(Base.metadata)
    yield session
    session.close()


@pytest.fixture
def session_factory(session):
    """Sessions of their own on the ``session`` fixture's database (the rebuild's per-page transactions)."""
    return make_session_factory(session.get_bind())


ISO = "2026-11-03T10:00:00+00:00"


@pytest.fixture
def order():
    """An order as sales' order.* events carry it (two lines, CNY, confirmed 3 Nov 2026)."""
    def make(version=2, status="confirmed", owner_id=ALICE, owner_team_id="east", confirmed_at=ISO,
             lines=None, **overrides):
        data = {
            "id": overrides.pop("id", None) or str(uuid.uuid4()),
            "number": "SO-1", "customer_id": str(uuid.uuid4()), "opportunity_id": None,
            "owner_id": owner_id, "owner_team_id": owner_team_id, "status": status, "currency": "CNY",
            "subtotal": "300.00", "discount_total": "0.00", "tax_total": "0.00", "total": "300.00",
            "paid_amount": "0.00", "confirmed_at": confirmed_at, "created_at": "2026-11-02T09:00:00+00:00",
            "version": version,
            "lines": lines if lines is not None else [
                {"position": 1, "product_id": str(uuid.uuid4()), "sku": "P-1", "description": "Widget",
                 "quantity": "2.000", "unit_price": "100.00", "subtotal": "200.00", "discount": "0.00",
                 "tax": "0.00", "total": "200.00"},
                {"position": 2, "product_id": str(uuid.uuid4()), "sku": "P-2", "description": "Gadget",
                 "quantity": "1.000", "unit_price": "100.00", "subtotal": "100.00", "discount": "0.00",
                 "tax": "0.00", "total": "100.00"}],
        }
        data.update(overrides)
        return data
    return make


@pytest.fixture
def opportunity():
    """An opportunity as opportunity.* events carry it; ``stage_change`` as created/stage_changed add it."""
    def make(version=1, stage="qualify", position=1, outcome="open", from_stage=None, **overrides):
        opportunity_id = overrides.pop("id", None) or str(uuid.uuid4())
        pipeline_id = overrides.pop("pipeline_id", None) or "11111111-1111-4111-8111-111111111111"
        data = {
            "id": opportunity_id, "customer_id": str(uuid.uuid4()), "title": "Big deal",
            "owner_id": ALICE, "owner_team_id": "east", "pipeline_id": pipeline_id, "stage": stage,
            "stage_position": position, "stage_outcome": outcome, "status": outcome, "amount": "1000.00",
            "currency": "CNY", "probability": 20, "expected_close_date": "2026-12-31", "source": None,
            "lost_reason": None, "created_at": ISO, "closed_at": None, "version": version,
            "stage_change": {
                "stage_change_id": str(uuid.uuid4()), "opportunity_id": opportunity_id,
                "pipeline_id": pipeline_id, "owner_id": ALICE, "owner_team_id": "east",
                "from_stage": from_stage, "to_stage": stage, "to_stage_position": position,
                "to_outcome": outcome, "changed_at": ISO,
                "seconds_in_previous_stage": None if from_stage is None else 3600},
        }
        data.update(overrides)
        return data
    return make


@pytest.fixture
def contract():
    def make(version=1, status="active", **overrides):
        data = {
            "id": overrides.pop("id", None) or str(uuid.uuid4()), "customer_id": str(uuid.uuid4()),
            "title": "Support 2027", "value": "5000.00", "currency": "CNY", "start_date": "2026-01-01",
            "end_date": "2026-12-31", "status": status, "owner_id": ALICE, "owner_team_id": "east",
            "version": version, "renewal_of": None,
        }
        data.update(overrides)
        return data
    return make


@pytest.fixture
def followup():
    def make(customer_id=None, occurred_at=ISO, **overrides):
        data = {
            "id": str(uuid.uuid4()), "customer_id": customer_id or str(uuid.uuid4()), "owner_id": ALICE,
            "owner_team_id": "east", "type": "call", "occurred_at": occurred_at, "logged_by": ALICE,
            "summary": "Called about the renewal",
        }
        data.update(overrides)
        return data
    return make


@pytest.fixture
def customer():
    """A customer dict as the customers service puts it in its events."""
    def make(version=1, owner_id=ALICE, owner_team_id="east", lifecycle_stage="lead",
             deleted=False, **overrides):
        customer_id = overrides.pop("id", None) or str(uuid.uuid4())
        now = datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc).isoformat()
        data = {
            "id": customer_id, "kind": "company", "name": "Acme Ltd",
            "email": "buyer@acme.example", "phone": "+8613800138000",
            "owner_id": owner_id, "owner_team_id": owner_team_id,
            "lifecycle_stage": lifecycle_stage, "lifecycle_changed_at": now,
            "tier": "B", "tags": ["vip"], "region": "east", "industry": "retail",
            "source": "referral", "notes": None, "created_at": now, "updated_at": now,
            "deleted_at": now if deleted else None, "version": version,
        }
        data.update(overrides)
        return data
    return make


@pytest.fixture
def envelope():
    """An event envelope as the customers or sales service's outbox publishes it."""
    def make(event_type, data, actor_id=ALICE, role="sales", team_id="east"):
        producer = "customers" if event_type.split(".")[0] in ("customer", "followup") else "sales"
        return {
            "event_id": str(uuid.uuid4()),
            "type": event_type,
            "version": 1,
            "occurred_at": datetime.now(timezone.utc).isoformat(),
            "producer": producer,
            "actor": {"user_id": actor_id, "role": role, "team_id": team_id},
            "request_id": "r-" + uuid.uuid4().hex[:8],
            "data": data,
        }
    return make
