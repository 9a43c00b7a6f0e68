"""The service's entrypoints, through nameko's worker_factory, and its migrations."""
from nameko.testing.services import worker_factory

from crm_common.testing import schema_drift

from customers.models import Base
from customers.service import CustomersService
from conftest import model_drift


def test_entrypoints_use_the_callers_context(session, as_alice):
    service = worker_factory(CustomersService, db=session, context=as_alice)
    created = service.create_customer({"kind": "company", "name": "Via RPC"})
    assert service.get_customer(created["id"])["name"] == "Via RPC"
    assert service.list_customers()["items"][0]["id"] == created["id"]
    updated = service.update_customer(created["id"], {"tier": "A"}, 1)
    assert updated["tier"] == "A" and updated["version"] == 2
    service.delete_customer(created["id"], 2)
    assert service.list_customers()["items"] == []


def test_migrations_match_the_models(tmp_path):
    assert model_drift(schema_drift("customers.migrations", Base.metadata, f"sqlite:///{tmp_path}/c.db")) == []
