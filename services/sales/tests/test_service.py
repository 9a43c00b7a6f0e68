"""The service's entrypoints, through nameko's worker_factory, and its migrations."""
from nameko.testing.services import worker_factory

from crm_common.testing import schema_drift

from sales.models import Base
from sales.service import SalesService

BOB = "00000000-0000-4000-8000-00000000000b"


def test_handlers_keep_the_replica_that_customer_known_reads(session, as_alice, customer,
                                                            envelope, assigned):
    service = worker_factory(SalesService, db=session, context=as_alice)
    created = customer()
    cid = created["id"]
    assert service.customer_known(cid) is False

    service.on_customer_created(envelope("customer.created", created))
    service.on_customer_assigned(assigned(cid, BOB, created["owner_id"], version=2))
    assert service.customer_known(cid) is True

    deleted = envelope("customer.deleted", customer(id=cid, version=3, deleted=True))
    service.on_customer_deleted(deleted)
    service.on_customer_deleted(deleted)  # redelivered
    # An older update arriving late does not bring the customer back.
    service.on_customer_updated(envelope("customer.updated", customer(id=cid, version=2, changes={})))
    assert service.customer_known(cid) is False


def test_migrations_match_the_models(tmp_path):
    assert schema_drift("sales.migrations", Base.metadata, f"sqlite:///{tmp_path}/s.db") == []
