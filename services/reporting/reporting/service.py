"""The reporting service's entrypoints: thin wrappers over reporting.domain."""
from crm_common.entrypoints import rpc

from crm_common.consumer import event_handler
from crm_common.context import Context
from crm_common.db import Database
from crm_common.metrics import Metrics
from crm_common.ops import OpsEndpoints

from reporting.domain import CustomerFacts, Reports

CUSTOMERS = "customers"


class ReportingService(OpsEndpoints):
    name = "reporting"

    db = Database(migrations="reporting.migrations")
    context = Context()
    metrics = Metrics()

    # --- read model ------------------------------------------------------

    @event_handler(CUSTOMERS, "customer.created")
    def on_customer_created(self, envelope):
        CustomerFacts(self.db).apply(envelope)

    @event_handler(CUSTOMERS, "customer.updated")
    def on_customer_updated(self, envelope):
        CustomerFacts(self.db).apply(envelope)

    @event_handler(CUSTOMERS, "customer.deleted")
    def on_customer_deleted(self, envelope):
        CustomerFacts(self.db).apply(envelope)

    @event_handler(CUSTOMERS, "customer.imported")
    def on_customers_imported(self, envelope):
        CustomerFacts(self.db).apply_imported(envelope)

    # --- reports ---------------------------------------------------------

    @rpc
    def customers_summary(self, filters=None):
        return Reports(self.db, self.context).customers_summary(filters)
