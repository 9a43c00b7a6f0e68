"""The sales service's entrypoints: thin wrappers over sales.domain."""
from crm_common.entrypoints import rpc

from crm_common.consumer import event_handler
from crm_common.context import Context
from crm_common.db import Database
from crm_common.metrics import Metrics
from crm_common.ops import OpsEndpoints

from sales.domain import CustomerReplicaFeed, customer_known

CUSTOMERS = "customers"


class SalesService(OpsEndpoints):
    name = "sales"

    db = Database(migrations="sales.migrations")
    context = Context()
    metrics = Metrics()

    # --- customer replica ------------------------------------------------

    @event_handler(CUSTOMERS, "customer.created")
    def on_customer_created(self, envelope):
        CustomerReplicaFeed(self.db).apply_snapshot(envelope)

    @event_handler(CUSTOMERS, "customer.updated")
    def on_customer_updated(self, envelope):
        CustomerReplicaFeed(self.db).apply_snapshot(envelope)

    @event_handler(CUSTOMERS, "customer.deleted")
    def on_customer_deleted(self, envelope):
        CustomerReplicaFeed(self.db).apply_snapshot(envelope)

    @event_handler(CUSTOMERS, "customer.assigned")
    def on_customer_assigned(self, envelope):
        CustomerReplicaFeed(self.db).apply_assigned(envelope)

    @event_handler(CUSTOMERS, "customer.imported")
    def on_customers_imported(self, envelope):
        CustomerReplicaFeed(self.db).apply_imported(envelope)

    @rpc
    def customer_known(self, customer_id):
        return customer_known(self.db, customer_id)

    # --- products, price lists, quotes, orders, payments (sales.catalogue, sales.quotes, sales.orders) ---

    # --- pipelines and opportunities (sales.pipeline) ---------------------

    # --- contracts (sales.contracts) --------------------------------------
